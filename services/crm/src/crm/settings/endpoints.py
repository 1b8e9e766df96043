"""``/api/settings``: admins override runtime settings (secrets encrypted, every change audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from crm.auth.dependencies import CurrentAdmin
from crm.web.errors import error_responses
from crm.web.state import Session, State

from . import service
from .schemas import SettingChange, SettingList, SettingRead, SettingWrite
from .sync import SettingsSync, get_settings_sync

router = APIRouter(prefix="/api/settings", tags=["administration"], responses=error_responses(401, 403))

Key = Annotated[str, Path(max_length=100, description="setting key, e.g. sla.minutes")]
Sync = Annotated[SettingsSync | None, Depends(get_settings_sync)]


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _propagated(sync: SettingsSync | None, key: str) -> bool:
    return await sync.propagate(key) if sync is not None else False


@router.get("", summary="List runtime settings (admin)")
async def list_settings(_: CurrentAdmin, session: Session, state: State) -> SettingList:
    """Every runtime setting with its value in force (secrets masked) and where it comes from.

    Pipeline stages are managed under ``/api/stages``.
    """
    states = await service.list_settings(session, state.settings)
    return SettingList(items=[SettingRead.of(item) for item in states])


@router.get("/{key}", summary="Read a runtime setting (admin)", responses=error_responses(404))
async def get_setting(_: CurrentAdmin, session: Session, state: State, key: Key) -> SettingRead:
    """One runtime setting (secrets masked)."""
    return SettingRead.of(await service.get_setting(session, state.settings, key))


@router.put("/{key}", summary="Override a runtime setting (admin)", responses=error_responses(404))
async def put_setting(
    admin: CurrentAdmin, session: Session, state: State, sync: Sync, request: Request, key: Key, body: SettingWrite
) -> SettingChange:
    """Set a value that replaces the environment's default, for every service, without a restart.

    Values are checked per key (422 with the reason): ``sla.minutes`` a whole number of
    minutes, ``business.timezone`` an IANA zone, ``business.hours`` ``HH:MM-HH:MM``,
    ``meta.human_agent`` true or false, ``gemini.model`` a model name, secrets without
    spaces. Secrets are stored encrypted and shown masked. Every change is in the audit log.
    """
    current, changed = await service.set_setting(
        session, state.settings, admin, key, body.value, client_address=_address(request)
    )
    await session.commit()
    propagated = await _propagated(sync, key) if changed else True
    return SettingChange(**SettingRead.of(current).model_dump(), changed=changed, propagated=propagated)


@router.delete("/{key}", summary="Go back to the environment's default (admin)", responses=error_responses(404))
async def delete_setting(
    admin: CurrentAdmin, session: Session, state: State, sync: Sync, request: Request, key: Key
) -> SettingChange:
    """Drop the override: every service falls back to its environment value (audited)."""
    current, changed = await service.reset_setting(
        session, state.settings, admin, key, client_address=_address(request)
    )
    await session.commit()
    propagated = await _propagated(sync, key) if changed else True
    return SettingChange(**SettingRead.of(current).model_dump(), changed=changed, propagated=propagated)

"""``/api/channels``: admins see every channel with its health, set its page token, and
rename or (de)activate it. Tokens go in, never out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from crm.auth.dependencies import CurrentAdmin
from crm.web.errors import error_responses
from crm.web.state import Session, State
from crm.web.types import INT4_MAX

from . import service
from .schemas import ChannelList, ChannelRead, ChannelTokenWrite, ChannelUpdate
from .tokens import PageTokens

router = APIRouter(prefix="/api/channels", tags=["channels"], responses=error_responses(401, 403))

ChannelId = Annotated[int, Path(ge=1, le=INT4_MAX, description="channel id")]


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.get("", summary="List channels with their health (admin)")
async def list_channels(_: CurrentAdmin, session: Session) -> ChannelList:
    """Every connected Page and Instagram account: active or not, whether Meta refused its
    token (``needs_reauth``), its last webhook, what the health check last found, when its
    token expires and whether it has a token of its own. Tokens are never returned."""
    channels = await service.list_channels(session)
    return ChannelList(items=[ChannelRead.of(channel) for channel in channels])


@router.put("/{channel_id}/token", summary="Set a channel's page token (admin)", responses=error_responses(404))
async def put_token(
    admin: CurrentAdmin,
    session: Session,
    state: State,
    request: Request,
    channel_id: ChannelId,
    body: ChannelTokenWrite,
) -> ChannelRead:
    """Store a new page access token for the channel, encrypted, and clear ``needs_reauth``.
    The audit log records who set it and when, never the value; 422 for an empty token or
    one with spaces. The next ``channel_health`` run (or ``POST /api/jobs/channel_health/run``)
    checks it with Meta."""
    channel = await service.set_token(
        session,
        PageTokens(state.settings),
        admin,
        channel_id,
        body.token.get_secret_value(),
        client_address=_address(request),
    )
    await session.commit()
    return ChannelRead.of(channel)


@router.patch("/{channel_id}", summary="Rename or (de)activate a channel (admin)", responses=error_responses(404))
async def patch_channel(
    admin: CurrentAdmin, session: Session, request: Request, channel_id: ChannelId, body: ChannelUpdate
) -> ChannelRead:
    """Change the channel's display name or whether it is active (an inactive channel is
    not health-checked); every change is in the audit log."""
    channel = await service.update_channel(session, admin, channel_id, body, client_address=_address(request))
    await session.commit()
    return ChannelRead.of(channel)

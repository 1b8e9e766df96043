"""Runtime settings: the effective value of each key, overrides, and their audit. Never commits.

A key's value comes from the ``settings`` table when an admin overrode it, else from the
environment. Secrets are sealed at rest with ``SecretBox(APP_KEY, purpose="settings")``,
bound to their key (a sealed value copied to another key's row does not open), and leave
this module only masked (or, for the live-settings bucket, in clear to
:class:`~jggl_common.live_settings.LiveSettings`, which seals them again for the broker).
Values sealed with a key of ``APP_KEY_PREVIOUS``, or before values were bound to their key,
still open; :func:`reseal_stored` seals them again with the current ``APP_KEY`` (crm does it
at start-up), after which the previous key can be dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.audit import record_change
from crm.config import CrmSettings
from crm.models import Channel, Setting, User
from crm.web.errors import NotFound, Unprocessable
from jggl_common.crypto import DecryptionError, SecretBox
from jggl_common.live_settings import KNOWN_SETTINGS, SettingSpec
from jggl_common.logs import get_logger

from .catalog import InvalidSetting, environment, environment_default, normalize
from .repository import SettingRepository

Source = Literal["database", "environment", "unset"]
ACTION_SET = "setting.set"
ACTION_RESET = "setting.reset"
log = get_logger(__name__)

Keys = str | Sequence[str]
"""``APP_KEY``, or the key ring ``settings.app_keys`` (current key first, then ``APP_KEY_PREVIOUS``)."""


def settings_box(app_key: Keys) -> SecretBox:
    """The box that seals secret settings (and channel tokens) at rest; opens with every key of the ring."""
    return _box((app_key,) if isinstance(app_key, str) else tuple(app_key))


@lru_cache(maxsize=4)
def _box(keys: tuple[str, ...]) -> SecretBox:
    return SecretBox(keys, purpose="settings")


@dataclass(frozen=True)
class SettingState:
    """A key as it is in force now. ``value`` is in clear: mask it before showing a secret."""

    key: str
    spec: SettingSpec
    value: str | None
    source: Source
    updated_at: datetime | None = None
    updated_by_id: int | None = None
    updated_by_email: str | None = None
    problem: str | None = None


def _spec(key: str) -> SettingSpec:
    spec = KNOWN_SETTINGS.get(key)
    if spec is None:
        raise NotFound(f"There is no setting '{key}'")
    return spec


def _open(app_key: Keys, row: Setting) -> str:
    return settings_box(app_key).open(row.value, name=row.key) if row.is_secret else row.value


def _state(key: str, row: Setting | None, settings: CrmSettings, environ: Mapping[str, str]) -> SettingState:
    spec = KNOWN_SETTINGS[key]
    if row is None:
        default = environment_default(key, settings, environ)
        return SettingState(key, spec, default, "environment" if default is not None else "unset")
    try:
        value, problem = _open(settings.app_keys, row), None
    except DecryptionError:
        value, problem = None, "The stored value cannot be decrypted with APP_KEY (or APP_KEY_PREVIOUS); set it again."
    return SettingState(
        key,
        spec,
        value,
        "database",
        updated_at=row.updated_at,
        updated_by_id=row.updated_by_id,
        updated_by_email=row.updated_by_email,
        problem=problem,
    )


async def list_settings(session: AsyncSession, settings: CrmSettings) -> list[SettingState]:
    """Every runtime setting, in the order of ``KNOWN_SETTINGS``."""
    rows = {row.key: row for row in await SettingRepository(session).all()}
    environ = environment()
    return [_state(key, rows.get(key), settings, environ) for key in KNOWN_SETTINGS]


async def get_setting(session: AsyncSession, settings: CrmSettings, key: str) -> SettingState:
    """One runtime setting; :class:`NotFound` for a key that is not one."""
    _spec(key)
    return _state(key, await SettingRepository(session).get(key), settings, environment())


async def set_setting(
    session: AsyncSession, settings: CrmSettings, actor: User, key: str, raw: str, *, client_address: str | None
) -> tuple[SettingState, bool]:
    """Override ``key`` with ``raw``; returns the new state and whether anything changed.

    An invalid value is :class:`Unprocessable` and leaves everything as it was. A change
    is audited in the caller's transaction; setting the value already in force is not.
    """
    spec = _spec(key)
    try:
        value = normalize(key, raw)
    except InvalidSetting as exc:
        raise Unprocessable(str(exc)) from None
    repository = SettingRepository(session)
    await repository.lock(key)
    environ = environment()
    before = _state(key, await repository.get(key), settings, environ)
    if before.source == "database" and before.value == value:
        return before, False
    stored = settings_box(settings.app_keys).seal(value, name=key) if spec.secret else value
    await repository.upsert(key, stored, secret=spec.secret, actor=actor)
    after = _state(key, await repository.get(key), settings, environ)
    await record_change(
        session,
        actor,
        action=ACTION_SET,
        key=key,
        old=before.value,
        new=value,
        secret=spec.secret,
        client_address=client_address,
        details={"old_source": before.source, "new_source": "database"},
    )
    return after, True


async def reset_setting(
    session: AsyncSession, settings: CrmSettings, actor: User, key: str, *, client_address: str | None
) -> tuple[SettingState, bool]:
    """Drop the override of ``key`` so the environment's default applies again (audited)."""
    spec = _spec(key)
    repository = SettingRepository(session)
    await repository.lock(key)
    environ = environment()
    before = _state(key, await repository.get(key), settings, environ)
    if not await repository.delete(key):
        return before, False
    after = _state(key, None, settings, environ)
    await record_change(
        session,
        actor,
        action=ACTION_RESET,
        key=key,
        old=before.value,
        new=after.value,
        secret=spec.secret,
        client_address=client_address,
        details={"old_source": before.source, "new_source": after.source},
    )
    return after, True


async def database_value(session: AsyncSession, app_key: Keys, key: str) -> str | None:
    """The override of ``key`` in clear, None without one; :class:`DecryptionError` if unreadable."""
    row = await SettingRepository(session).get(key)
    return _open(app_key, row) if row is not None else None


async def database_values(session: AsyncSession, app_key: Keys) -> tuple[dict[str, str], set[str]]:
    """Every readable override in clear, and the keys whose stored value cannot be decrypted."""
    values: dict[str, str] = {}
    unreadable: set[str] = set()
    for row in await SettingRepository(session).all():
        if row.key not in KNOWN_SETTINGS:
            continue
        try:
            values[row.key] = _open(app_key, row)
        except DecryptionError:
            unreadable.add(row.key)
    return values, unreadable


async def effective_value(session: AsyncSession, settings: CrmSettings, key: str) -> str | None:
    """The value of ``key`` in force (override, else environment), in clear, for crm's own use."""
    return (await get_setting(session, settings, key)).value


async def reseal_stored(session: AsyncSession, app_key: Keys) -> int:
    """Seal again with the current ``APP_KEY`` every secret stored with a previous key (or,
    for settings, without its key's name); returns how many were. Values, authors and
    times stay; unreadable values are left as they are (and reported by the settings API).
    Safe on every replica at once: rows are locked and checked again."""
    box = settings_box(app_key)
    resealed = 0
    for row in (await session.execute(select(Setting).with_for_update())).scalars():
        if not row.is_secret:
            continue
        try:
            if box.needs_reseal(row.value, name=row.key):
                row.value = box.seal(box.open(row.value, name=row.key), name=row.key)
                resealed += 1
        except DecryptionError:
            log.error("secret setting cannot be decrypted with APP_KEY or APP_KEY_PREVIOUS", key=row.key)
    channels = select(Channel).where(col(Channel.access_token_sealed).is_not(None)).with_for_update()
    for channel in (await session.execute(channels)).scalars():
        sealed = channel.access_token_sealed
        assert sealed is not None
        try:
            if box.needs_reseal(sealed):
                channel.access_token_sealed = box.seal(box.open(sealed))
                resealed += 1
        except DecryptionError:
            log.error("channel page token cannot be decrypted with APP_KEY or APP_KEY_PREVIOUS", channel_id=channel.id)
    await session.flush()
    return resealed

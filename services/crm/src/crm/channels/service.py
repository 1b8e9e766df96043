"""The admins' operations on channels, each audited. Never commits: the caller owns the
transaction. A page token is sealed before it is stored and never logged or audited in any
form, not even masked."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from crm.audit import record_change
from crm.models import Channel, User
from crm.web.errors import NotFound, Unprocessable

from . import repository as repo
from .schemas import ChannelUpdate
from .tokens import PageTokens

__all__ = ["MAX_TOKEN_LENGTH", "list_channels", "set_token", "update_channel"]

MAX_TOKEN_LENGTH = 4096
ACTION_TOKEN = "channel.token.set"  # noqa: S105 - an audit action, not a secret
ACTION_UPDATE = "channel.update"

# Said instead of echoing what was sent: the value is a secret.
EMPTY_TEXT = "The page access token must not be empty."
SHAPE_TEXT = f"The page access token must be at most {MAX_TOKEN_LENGTH} printable characters without spaces."


async def list_channels(session: AsyncSession) -> Sequence[Channel]:
    """Every channel."""
    return await repo.all_channels(session)


async def _channel(session: AsyncSession, channel_id: int) -> Channel:
    channel = await repo.get_channel(session, channel_id, for_update=True)
    if channel is None:
        raise NotFound("Channel not found")
    return channel


def checked_token(raw: str) -> str:
    """The token as stored, or :class:`Unprocessable` saying why not (without the value)."""
    token = raw.strip()
    if not token:
        raise Unprocessable(EMPTY_TEXT)
    if len(token) > MAX_TOKEN_LENGTH or any(not c.isprintable() or c.isspace() for c in token):
        raise Unprocessable(SHAPE_TEXT)
    return token


async def set_token(
    session: AsyncSession, tokens: PageTokens, actor: User, channel_id: int, raw: str, *, client_address: str | None
) -> Channel:
    """Store the channel's own page token (sealed) and clear ``needs_reauth``: the admin has
    reconnected it. The next health check tells whether Meta accepts it."""
    token = checked_token(raw)
    channel = await _channel(session, channel_id)
    had_own = bool(channel.access_token_sealed)
    was_flagged = channel.needs_reauth
    channel.access_token_sealed = tokens.seal(token)
    channel.needs_reauth = False
    session.add(channel)
    await record_change(
        session,
        actor,
        action=ACTION_TOKEN,
        key=f"channel:{channel_id}:access_token",
        old=None,
        new=None,
        secret=True,
        client_address=client_address,
        details={
            "channel_id": channel_id,
            "platform": channel.platform,
            "external_id": channel.external_id,
            "replaced_own_token": had_own,
            "cleared_needs_reauth": was_flagged,
        },
    )
    return channel


async def update_channel(
    session: AsyncSession, actor: User, channel_id: int, data: ChannelUpdate, *, client_address: str | None
) -> Channel:
    """Rename or (de)activate a channel; each field that changes is one audit entry."""
    channel = await _channel(session, channel_id)
    changes: list[tuple[str, str | None, str | None]] = []
    if data.name is not None and data.name != channel.name:
        changes.append(("name", channel.name, data.name))
        channel.name = data.name
    if data.is_active is not None and data.is_active != channel.is_active:
        changes.append(("is_active", str(channel.is_active).lower(), str(data.is_active).lower()))
        channel.is_active = data.is_active
    session.add(channel)
    for field, old, new in changes:
        await record_change(
            session,
            actor,
            action=ACTION_UPDATE,
            key=f"channel:{channel_id}:{field}",
            old=old,
            new=new,
            secret=False,
            client_address=client_address,
            details={"channel_id": channel_id, "platform": channel.platform, "external_id": channel.external_id},
        )
    return channel

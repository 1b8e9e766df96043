"""One-time Telegram link codes, and unlinking. Never commits.

The code is shown to the user once and kept nowhere in clear: crm stores its hash, and
the ``crm.telegram.link_requested`` event carries that hash for the notifier, which
hashes what the user sends with ``/start <code>`` to find the request.
"""

from __future__ import annotations

import math
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.models import TelegramLinkCode, User
from crm.web.errors import TooManyRequests
from jggl_common import outbox
from jggl_common.contracts import (
    TelegramLinkRequested,
    TelegramLinkRequestedData,
    TelegramUnlinkRequested,
    TelegramUnlinkRequestedData,
    link_code_hash,
    utcnow,
)
from jggl_common.logs import correlation_id, get_logger

log = get_logger(__name__)

PRODUCER = "crm"
CODE_TTL = timedelta(minutes=15)
CODE_LENGTH = 12
# No 0/O, 1/I/L: a manager may have to read the code off one screen and type it on another.
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
MAX_ACTIVE_CODES = 5
DEFAULT_BOT_USERNAME = "jggl_bot"
_BOT_USERNAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{3,31}$")


@dataclass(frozen=True)
class LinkCode:
    """A code as shown to the user, once."""

    code: str
    deep_link: str
    expires_at: datetime
    event_id: str


def bot_username() -> str:
    """The bot's @username for deep links: ``TELEGRAM_BOT_USERNAME``, else ``jggl_bot``."""
    name = os.environ.get("TELEGRAM_BOT_USERNAME", "").strip().lstrip("@")
    return name if _BOT_USERNAME.match(name) else DEFAULT_BOT_USERNAME


def new_code() -> str:
    """A fresh random code (about 59 bits)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


async def request_link(session: AsyncSession, user: User, *, bot: str) -> LinkCode:
    """A new code for ``user``, valid for 15 minutes, announced to the notifier (by hash).

    At most five codes may be pending per user; more is :class:`TooManyRequests`.
    """
    assert user.id is not None
    now = utcnow()
    # One request at a time per user, so the pending-codes limit holds under double clicks.
    await session.execute(select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"crm.telegram-link:{user.id}"))))
    await session.execute(
        delete(TelegramLinkCode).where(
            col(TelegramLinkCode.user_id) == user.id, col(TelegramLinkCode.expires_at) <= now
        )
    )
    pending, oldest = (
        await session.execute(
            select(func.count(), func.min(col(TelegramLinkCode.expires_at))).where(
                col(TelegramLinkCode.user_id) == user.id
            )
        )
    ).one()
    if pending >= MAX_ACTIVE_CODES:
        wait = max(1, math.ceil((oldest - now).total_seconds()))
        raise TooManyRequests(
            "Too many link codes requested; use one you have or wait for it to expire",
            headers={"Retry-After": str(wait)},
        )
    code = new_code()
    expires_at = now + CODE_TTL
    session.add(
        TelegramLinkCode(user_id=user.id, code_hash=link_code_hash(code), created_at=now, expires_at=expires_at)
    )
    await session.flush()
    event = TelegramLinkRequested(
        producer=PRODUCER,
        correlation_id=correlation_id(),
        data=TelegramLinkRequestedData(
            user_id=user.id,
            name=user.name,
            email=user.email,
            role=user.role,
            code_hash=link_code_hash(code),
            expires_at=expires_at,
        ),
    )
    event_id = await outbox.stage(session, event)
    return LinkCode(code=code, deep_link=f"https://t.me/{bot}?start={code}", expires_at=expires_at, event_id=event_id)


UnlinkReason = Literal["self", "admin", "deactivated"]


async def request_unlink(session: AsyncSession, user_id: int, *, reason: UnlinkReason, actor: User | None) -> str:
    """Unlink ``user_id``'s Telegram: their pending codes are dropped and the notifier is told.

    Returns the id of the staged ``crm.telegram.unlink_requested`` event.
    """
    await session.execute(select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(f"crm.telegram-link:{user_id}"))))
    await session.execute(delete(TelegramLinkCode).where(col(TelegramLinkCode.user_id) == user_id))
    event = TelegramUnlinkRequested(
        producer=PRODUCER,
        correlation_id=correlation_id(),
        data=TelegramUnlinkRequestedData(
            user_id=user_id, reason=reason, actor_user_id=actor.id if actor is not None else None
        ),
    )
    event_id = await outbox.stage(session, event)
    log.info(
        "telegram unlink requested",
        user_id=user_id,
        reason=reason,
        actor_user_id=actor.id if actor is not None else None,
    )
    return event_id

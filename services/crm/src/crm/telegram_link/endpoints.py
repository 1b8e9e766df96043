"""``/api/me/telegram-link``: a code to link your Telegram to the CRM bot, or unlink it;
``DELETE /api/users/{id}/telegram-link``: an admin unlinks anyone."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from crm.auth.dependencies import CurrentAdmin, CurrentUser
from crm.models import User
from crm.web.errors import NotFound, error_responses
from crm.web.state import Session, State
from crm.web.types import UserId

from . import service

router = APIRouter(tags=["auth"], responses=error_responses(401))


class TelegramLink(BaseModel):
    """A one-time code and the link that sends it to the bot."""

    code: str = Field(description="send it to the bot as /start <code> (any letter case)")
    deep_link: str = Field(description="opens the bot in Telegram with the code filled in")
    expires_at: datetime = Field(description="the code works once, until then (15 minutes)")


@router.post(
    "/api/me/telegram-link",
    status_code=status.HTTP_201_CREATED,
    summary="Link your Telegram",
    responses=error_responses(429),
)
async def telegram_link(user: CurrentUser, session: Session, state: State) -> TelegramLink:
    """A one-time code, valid for 15 minutes: open ``deep_link`` (or send ``/start <code>``
    to the bot) and the bot sends you notifications about your deals from then on.

    The code is shown only here; the CRM keeps only its hash.
    """
    link = await service.request_link(session, user, bot=service.bot_username())
    await session.commit()
    await state.announce(session)
    return TelegramLink(code=link.code, deep_link=link.deep_link, expires_at=link.expires_at)


@router.delete(
    "/api/me/telegram-link",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Unlink your Telegram",
)
async def telegram_unlink(user: CurrentUser, session: Session, state: State) -> None:
    """The bot stops sending you notifications and says so in the chat once; your unused
    link codes stop working. Unlinking when nothing is linked is harmless (204 too).
    """
    assert user.id is not None
    await service.request_unlink(session, user.id, reason="self", actor=user)
    await session.commit()
    await state.announce(session)


@router.delete(
    "/api/users/{user_id}/telegram-link",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Unlink a user's Telegram (admin)",
    tags=["users"],
    responses=error_responses(403, 404),
)
async def telegram_unlink_user(admin: CurrentAdmin, session: Session, state: State, user_id: UserId) -> None:
    """As ``DELETE /api/me/telegram-link``, for any user; 404 when there is no such user."""
    if await session.get(User, user_id) is None:
        raise NotFound("User not found")
    await service.request_unlink(session, user_id, reason="admin", actor=admin)
    await session.commit()
    await state.announce(session)

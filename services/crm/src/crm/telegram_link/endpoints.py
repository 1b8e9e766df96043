"""``POST /api/me/telegram-link``: a code to link your Telegram to the CRM bot."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from crm.auth.dependencies import CurrentUser
from crm.web.errors import error_responses
from crm.web.state import Session, State

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

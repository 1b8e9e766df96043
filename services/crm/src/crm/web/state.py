"""What a request needs, made once at start-up, and the dependencies that hand it out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from crm.auth.browser import BrowserSessions
from crm.auth.passwords import Passwords
from crm.auth.ratelimit import LoginLimiter
from crm.auth.tokens import Tokens
from crm.config import CrmSettings
from crm.live.streams import LiveEvents
from jggl_common.outbox import Outbox

from .pagination import CursorCodec


@dataclass
class CrmState:
    """The HTTP side of one crm process (``app.state.crm``)."""

    settings: CrmSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    passwords: Passwords
    tokens: Tokens
    login_limiter: LoginLimiter
    cursors: CursorCodec
    browser: BrowserSessions
    outbox: Outbox | None = None
    live: LiveEvents | None = None

    async def announce(self, session: AsyncSession) -> None:
        """Publish the events ``session`` staged, once the endpoint committed it; never raises.

        A failure here is not the caller's problem: the change is committed and the
        outbox relay publishes what is left behind. Without an outbox the events wait
        for the relay.
        """
        if self.outbox is not None:
            await self.outbox.committed(session)


def get_state(request: Request) -> CrmState:
    """The process-wide state of the crm API."""
    state: CrmState = request.app.state.crm
    return state


async def get_session(state: Annotated[CrmState, Depends(get_state)]) -> AsyncIterator[AsyncSession]:
    """The request's unit of work; endpoints commit it, anything uncommitted is rolled back."""
    async with state.sessions() as session:
        yield session


State = Annotated[CrmState, Depends(get_state)]
"""The crm API state, as an endpoint parameter."""

Session = Annotated[AsyncSession, Depends(get_session)]
"""The request's database session, as an endpoint parameter."""

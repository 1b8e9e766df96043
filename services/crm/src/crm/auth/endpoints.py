"""``/api/auth/login``, ``/api/auth/session`` and ``/api/me``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import User
from crm.settings.service import get_setting
from crm.users.schemas import MeRead, UserRead
from crm.web.errors import CrmError, error_responses
from crm.web.state import CrmState, Session, State

from . import service
from .dependencies import CurrentUser
from .schemas import LoginRequest, SessionResponse, TokenResponse

router = APIRouter(tags=["auth"])

LOGINS = Counter("crm_logins_total", "Login attempts by outcome", ["outcome"])


async def _sign_in(request: Request, session: Session, state: State, credentials: LoginRequest) -> tuple[User, str]:
    """Check the credentials (throttled) and issue an access token: one path for both flows."""
    address = request.client.host if request.client else "unknown"
    try:
        user = await service.authenticate(
            session,
            state.passwords,
            state.login_limiter,
            email=credentials.email,
            password=credentials.password,
            address=address,
        )
    except CrmError as exc:
        LOGINS.labels("throttled" if exc.status_code == 429 else "refused").inc()
        raise
    await session.commit()
    LOGINS.labels("ok").inc()
    assert user.id is not None
    return user, state.tokens.issue(user.id, user.password_hash)


@router.post("/api/auth/login", summary="Log in", responses=error_responses(401, 429))
async def login(request: Request, session: Session, state: State, credentials: LoginRequest) -> TokenResponse:
    """Exchange e-mail and password for a bearer token.

    Attempts are limited per e-mail and per client address; past the limit the answer is
    429 with ``Retry-After``.
    """
    _, token = await _sign_in(request, session, state, credentials)
    return TokenResponse(access_token=token, expires_in=state.tokens.ttl_seconds)


@router.post(
    "/api/auth/session",
    summary="Sign in the browser",
    responses=error_responses(401, 429),
)
async def open_session(
    request: Request, response: Response, session: Session, state: State, credentials: LoginRequest
) -> SessionResponse:
    """Sign in with e-mail and password and keep the session in cookies (the web app's way).

    Sets the httpOnly cookie ``jggl_session`` (the access token, for the token's
    lifetime) and the readable cookie ``jggl_csrf``; every later POST/PUT/PATCH/DELETE
    authenticated by the cookie must send ``X-CSRF-Token`` with that value. Same limits as
    ``POST /api/auth/login``.
    """
    user, token = await _sign_in(request, session, state, credentials)
    csrf = state.browser.open(response, token)
    return SessionResponse(user=await _me(session, state, user), csrf_token=csrf)


@router.delete(
    "/api/auth/session",
    summary="Sign the browser out",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
)
async def close_session(state: State) -> Response:
    """Forget the browser session: both cookies (``jggl_session``, ``jggl_csrf``) are cleared.

    Always 204, signed in or not, so a page whose session already expired can still sign out.
    """
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    state.browser.close(response)
    return response


@router.get("/api/me", summary="The logged-in user", responses=error_responses(401))
async def me(user: CurrentUser, session: Session, state: State) -> MeRead:
    """Who the token (bearer header or session cookie) belongs to, and the business time
    zone their app shows dates in."""
    return await _me(session, state, user)


async def _me(session: AsyncSession, state: CrmState, user: User) -> MeRead:
    zone = await get_setting(session, state.settings, "business.timezone")
    return MeRead(**UserRead.model_validate(user).model_dump(), business_timezone=zone.value or "UTC")

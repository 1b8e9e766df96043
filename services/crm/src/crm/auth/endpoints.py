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
from .browser import CSRF_HEADER, SESSION_COOKIE
from .dependencies import CurrentCaller, CurrentUser
from .schemas import LoginRequest, SessionResponse, TokenResponse
from .tokens import InvalidToken

router = APIRouter(tags=["auth"])

LOGINS = Counter("crm_logins_total", "Login attempts by outcome", ["outcome"])
LOGOUTS = Counter("crm_logouts_total", "Sign-outs that revoked a user's tokens")


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
async def close_session(request: Request, session: Session, state: State) -> Response:
    """Sign out: both cookies (``jggl_session``, ``jggl_csrf``) are cleared, and when the
    session is still valid (with its ``X-CSRF-Token``), every token of its user issued
    until now is revoked, in this browser and everywhere else.

    Always 204, signed in or not, so a page whose session already expired can still sign out.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if token and state.browser.csrf_refusal(request.method, token, request.headers.get(CSRF_HEADER)) is None:
        await _revoke(session, state, token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    state.browser.close(response)
    return response


@router.post(
    "/api/auth/logout",
    summary="Log out everywhere",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(401, 403),
)
async def logout(caller: CurrentCaller, session: Session, state: State) -> Response:
    """Revoke every token of the caller issued until now (this one included), bearer or
    browser session; a browser's cookies are cleared too. Log in again for a new token."""
    service.revoke_tokens(caller.user)
    await session.commit()
    LOGOUTS.inc()
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    if caller.via_cookie:
        state.browser.close(response)
    return response


async def _revoke(session: AsyncSession, state: CrmState, token: str) -> None:
    try:
        claims = state.tokens.verify(token)
    except InvalidToken:
        return
    user = await session.get(User, claims.user_id, with_for_update=True)
    if user is None or claims.revoked_by(user.tokens_valid_after):
        return
    service.revoke_tokens(user)
    await session.commit()
    LOGOUTS.inc()


@router.get("/api/me", summary="The logged-in user", responses=error_responses(401))
async def me(user: CurrentUser, session: Session, state: State) -> MeRead:
    """Who the token (bearer header or session cookie) belongs to, and the business time
    zone their app shows dates in."""
    return await _me(session, state, user)


async def _me(session: AsyncSession, state: CrmState, user: User) -> MeRead:
    zone = await get_setting(session, state.settings, "business.timezone")
    return MeRead(**UserRead.model_validate(user).model_dump(), business_timezone=zone.value or "UTC")

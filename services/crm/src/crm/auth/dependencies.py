"""The caller behind a bearer token or a browser session cookie, as endpoint parameters.

API clients send ``Authorization: Bearer <token>``; the web app's browser sends the same
kind of token in the httpOnly ``jggl_session`` cookie, and then every unsafe request must
also carry the CSRF token (see :mod:`crm.auth.browser`). A bearer header wins over a
cookie, and bearer requests never need a CSRF token: another site cannot make a browser
send that header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

from crm.models import User
from crm.web.errors import Forbidden, Unauthorized
from crm.web.state import Session, State

from .browser import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from .tokens import AccessClaims, InvalidToken

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /api/auth/login")
_session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    scheme_name="BrowserSession",
    description=(
        f"The web app's session cookie, set by POST /api/auth/session. Requests other than GET/HEAD/OPTIONS "
        f"authenticated by it must carry the header {CSRF_HEADER} equal to the {CSRF_COOKIE} cookie, else 403."
    ),
)
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Caller:
    """Who is calling, what their token says, and whether it came in the session cookie."""

    user: User
    claims: AccessClaims
    via_cookie: bool


async def current_caller(
    request: Request,
    state: State,
    session: Session,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_session_cookie)],
) -> Caller:
    """The active caller; 401 without valid credentials, 403 for a cookie request without its CSRF token."""
    if credentials is not None:
        token, via_cookie = credentials.credentials, False
    elif cookie:
        token, via_cookie = cookie, True
    else:
        raise Unauthorized("Not authenticated", headers=_CHALLENGE)
    try:
        claims = state.tokens.verify(token)
    except InvalidToken:
        raise Unauthorized("Invalid or expired token", headers=_CHALLENGE) from None
    if via_cookie:
        refusal = state.browser.csrf_refusal(request.method, token, request.headers.get(CSRF_HEADER))
        if refusal is not None:
            raise Forbidden(refusal)
    user = await session.get(User, claims.user_id)
    if (
        user is None
        or not user.is_active
        or claims.revoked_by(user.tokens_valid_after)
        or not state.tokens.password_matches(claims, user.password_hash)
    ):
        raise Unauthorized("Invalid or expired token", headers=_CHALLENGE)
    return Caller(user=user, claims=claims, via_cookie=via_cookie)


async def current_user(caller: Annotated[Caller, Depends(current_caller)]) -> User:
    """The active user the token (header or cookie) belongs to; 401 for anything else."""
    return caller.user


async def current_admin(user: Annotated[User, Depends(current_user)]) -> User:
    """The caller, who must be an admin."""
    if user.role != "admin":
        raise Forbidden("Only admins may do this")
    return user


CurrentCaller = Annotated[Caller, Depends(current_caller)]
"""The authenticated caller with their token's claims (e.g. for streams that end when it expires)."""

CurrentUser = Annotated[User, Depends(current_user)]
"""The authenticated, active caller (admin or manager)."""

CurrentAdmin = Annotated[User, Depends(current_admin)]
"""The authenticated caller, refused with 403 unless an admin."""

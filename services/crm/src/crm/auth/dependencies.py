"""The caller behind a bearer token, as endpoint parameters."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crm.models import User
from crm.web.errors import Forbidden, Unauthorized
from crm.web.state import Session, State

from .tokens import InvalidToken

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /api/auth/login")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


async def current_user(
    state: State,
    session: Session,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The active user the token belongs to; 401 for anything else."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("Not authenticated", headers=_CHALLENGE)
    try:
        claims = state.tokens.verify(credentials.credentials)
    except InvalidToken:
        raise Unauthorized("Invalid or expired token", headers=_CHALLENGE) from None
    user = await session.get(User, claims.user_id)
    if (
        user is None
        or not user.is_active
        or state.tokens.fingerprint(user.password_hash) != claims.password_fingerprint
    ):
        raise Unauthorized("Invalid or expired token", headers=_CHALLENGE)
    return user


async def current_admin(user: Annotated[User, Depends(current_user)]) -> User:
    """The caller, who must be an admin."""
    if user.role != "admin":
        raise Forbidden("Only admins may do this")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
"""The authenticated, active caller (admin or manager)."""

CurrentAdmin = Annotated[User, Depends(current_admin)]
"""The authenticated caller, refused with 403 unless an admin."""

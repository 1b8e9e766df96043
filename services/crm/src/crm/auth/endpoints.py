"""``/api/auth/login`` and ``/api/me``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import Counter

from crm.users.schemas import UserRead
from crm.web.errors import CrmError, error_responses
from crm.web.state import Session, State

from . import service
from .dependencies import CurrentUser
from .schemas import LoginRequest, TokenResponse

router = APIRouter(tags=["auth"])

LOGINS = Counter("crm_logins_total", "Login attempts by outcome", ["outcome"])


@router.post("/api/auth/login", summary="Log in", responses=error_responses(401, 429))
async def login(request: Request, session: Session, state: State, credentials: LoginRequest) -> TokenResponse:
    """Exchange e-mail and password for a bearer token.

    Attempts are limited per e-mail and per client address; past the limit the answer is
    429 with ``Retry-After``.
    """
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
    return TokenResponse(
        access_token=state.tokens.issue(user.id, user.password_hash), expires_in=state.tokens.ttl_seconds
    )


@router.get("/api/me", summary="The logged-in user", responses=error_responses(401))
async def me(user: CurrentUser) -> UserRead:
    """Who the token belongs to."""
    return UserRead.model_validate(user)

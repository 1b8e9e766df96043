"""Logging in and creating the first admin. Never commits: the caller owns the transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import User
from crm.users.repository import UserRepository
from crm.web.errors import TooManyRequests, Unauthorized
from jggl_common.contracts import utcnow
from jggl_common.logs import get_logger

from .passwords import Passwords, WeakPassword, check_policy
from .ratelimit import LoginLimiter

log = get_logger(__name__)

# One message for every failure, so the answer never tells whether an account exists.
_REFUSED = "Incorrect e-mail or password"


async def authenticate(
    session: AsyncSession,
    passwords: Passwords,
    limiter: LoginLimiter,
    *,
    email: str,
    password: str,
    address: str,
) -> User:
    """The active user these credentials belong to.

    Raises :class:`TooManyRequests` past the attempt limit (per e-mail and per address)
    and :class:`Unauthorized` with one generic message for every other failure.
    """
    keys = limiter.keys(email, address)
    wait = await limiter.hit(keys)
    if wait is not None:
        raise TooManyRequests("Too many login attempts; try again later", headers={"Retry-After": str(wait)})
    user = await UserRepository(session).get_by_email(email.strip().lower())
    valid, new_hash = await passwords.verify(password, user.password_hash if user else None)
    if user is None or not valid or not user.is_active:
        raise Unauthorized(_REFUSED)
    if new_hash is not None:
        # Stored with older hashing parameters: upgrade while the password is at hand.
        user.password_hash = new_hash
        user.updated_at = utcnow()
    await limiter.forgive(keys)
    return user


def revoke_tokens(user: User) -> None:
    """End every session of ``user`` opened until now: tokens issued before are refused."""
    user.tokens_valid_after = utcnow()
    user.updated_at = user.tokens_valid_after


async def ensure_first_admin(
    session: AsyncSession, passwords: Passwords, *, email: str, password: str, name: str = "Admin"
) -> bool:
    """Create an admin with this e-mail unless a user already has it; True if created.

    Safe to run on every replica at once: the unique e-mail decides, not a check-then-act.
    A password the policy refuses creates nobody (an error is logged, without the password).
    """
    email = email.strip().lower()
    repository = UserRepository(session)
    if await repository.get_by_email(email) is not None:
        return False
    try:
        check_policy(password, "ADMIN_PASSWORD")
    except WeakPassword as exc:
        log.error("first admin not created: the password policy refuses ADMIN_PASSWORD", reason=str(exc))
        return False
    created = await repository.insert_if_absent(
        email=email, name=name, password_hash=await passwords.hash(password), role="admin"
    )
    return created is not None

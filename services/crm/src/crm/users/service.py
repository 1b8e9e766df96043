"""Managing users. Never commits: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from crm.auth.passwords import Passwords
from crm.auth.service import revoke_tokens
from crm.deals import service as deals
from crm.models import User
from crm.tasks import service as tasks
from crm.telegram_link import service as telegram_link
from crm.web.errors import Conflict, NotFound
from jggl_common.contracts import utcnow

from .repository import UserRepository
from .schemas import UserCreate, UserUpdate


async def list_users(session: AsyncSession) -> Sequence[User]:
    """Every user."""
    return await UserRepository(session).list_all()


async def create_user(session: AsyncSession, passwords: Passwords, data: UserCreate) -> User:
    """A new user; :class:`Conflict` when the e-mail is taken."""
    repository = UserRepository(session)
    user_id = await repository.insert_if_absent(
        email=data.email, name=data.name, password_hash=await passwords.hash(data.password), role=data.role
    )
    if user_id is None:
        raise Conflict("A user with this e-mail already exists")
    user = await repository.get(user_id)
    assert user is not None
    return user


async def update_user(
    session: AsyncSession, passwords: Passwords, actor: User, user_id: int, data: UserUpdate
) -> tuple[User, list[str]]:
    """Apply ``data`` to a user; returns it and the ids of the events it staged.

    An admin cannot demote or deactivate themselves, so there is always an admin left
    who can undo any change. A new role, a new password or a deactivation revokes every
    access token the user holds. A deactivated manager's open deals go back to the
    unassigned pool, where the rest of the team sees them, and their Telegram is unlinked.
    An admin made a manager no longer sees colleagues' deals: their open tasks there go to
    each deal's assignee.
    """
    user = await session.get(User, user_id, with_for_update=True)
    if user is None:
        raise NotFound("User not found")
    if user.id == actor.id and (data.is_active is False or data.role == "manager"):
        raise Conflict("You cannot deactivate or demote your own account; ask another admin")
    event_ids: list[str] = []
    # A new role, a new password or a deactivation ends every session the user has open;
    # the sessions stay ended when the user is reactivated.
    revoke = False
    if data.name is not None:
        user.name = data.name
    if data.role is not None:
        revoke = revoke or data.role != user.role
        if user.role == "admin" and data.role == "manager":
            await tasks.follow_demotion(session, actor, user_id)
        user.role = data.role
    if data.password is not None:
        user.password_hash = await passwords.hash(data.password)
        revoke = True
    if data.is_active is not None:
        if user.is_active and not data.is_active:
            event_ids = await deals.release_deals_of(session, actor, user_id)
            event_ids.append(await telegram_link.request_unlink(session, user_id, reason="deactivated", actor=actor))
            revoke = True
        user.is_active = data.is_active
    user.updated_at = utcnow()
    if revoke:
        revoke_tokens(user)
    await session.flush()
    return user, event_ids

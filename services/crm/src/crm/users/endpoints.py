"""``/api/users``: admins manage who can log in."""

from __future__ import annotations

from fastapi import APIRouter, status

from crm.auth.dependencies import CurrentAdmin
from crm.web.errors import error_responses
from crm.web.state import Session, State
from crm.web.types import UserId

from . import service
from .schemas import UserCreate, UserList, UserRead, UserUpdate

router = APIRouter(prefix="/api/users", tags=["users"], responses=error_responses(401, 403))


@router.get("", summary="List users (admin)")
async def list_users(_: CurrentAdmin, session: Session) -> UserList:
    """Every admin and manager, active or not."""
    users = await service.list_users(session)
    return UserList(items=[UserRead.model_validate(user) for user in users])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a user (admin)",
    responses=error_responses(409),
)
async def create_user(_: CurrentAdmin, session: Session, state: State, data: UserCreate) -> UserRead:
    """A new admin or manager; 409 when the e-mail is taken, 422 for a password under 8 characters."""
    user = await service.create_user(session, state.passwords, data)
    await session.commit()
    return UserRead.model_validate(user)


@router.patch("/{user_id}", summary="Change a user (admin)", responses=error_responses(404, 409))
async def update_user(
    admin: CurrentAdmin, session: Session, state: State, user_id: UserId, data: UserUpdate
) -> UserRead:
    """Rename, change role, (de)activate or set a new password.

    Deactivating ends the user's sessions at once, returns their open deals to the
    unassigned pool and unlinks their Telegram; a new password ends their other sessions.
    """
    user, _ = await service.update_user(session, state.passwords, admin, user_id, data)
    await session.commit()
    await state.announce(session)
    return UserRead.model_validate(user)

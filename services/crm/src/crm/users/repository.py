"""Reading and writing users."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.models import User
from jggl_common.contracts import utcnow


class UserRepository:
    """Queries over ``users``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        """The user with this id."""
        return await self.session.get(User, user_id)

    async def get_by_email(self, email: str) -> User | None:
        """The user with this (normalized) e-mail."""
        result = await self.session.execute(select(User).where(col(User.email) == email))
        return result.scalar_one_or_none()

    async def list_all(self) -> Sequence[User]:
        """Every user, admins first, then by name."""
        result = await self.session.execute(
            select(User).order_by((col(User.role) != "admin"), func.lower(col(User.name)), col(User.id))
        )
        return result.scalars().all()

    async def insert_if_absent(self, *, email: str, name: str, password_hash: str, role: str) -> int | None:
        """Insert a user unless the e-mail is taken (by anyone, even at this instant); the new id or None."""
        now = utcnow()
        result = await self.session.execute(
            insert(User)
            .values(
                email=email,
                name=name,
                password_hash=password_hash,
                role=role,
                is_active=True,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["email"])
            .returning(col(User.id))
        )
        return result.scalar_one_or_none()

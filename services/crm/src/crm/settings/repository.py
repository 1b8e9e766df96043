"""Reading and writing the ``settings`` table."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from crm.models import Setting, User
from jggl_common.contracts import utcnow


class SettingRepository:
    """Overrides of runtime settings, one row per key."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, key: str) -> None:
        """Serialise changes of ``key`` until the transaction ends (the row may not exist yet)."""
        await self.session.execute(select(sa.func.pg_advisory_xact_lock(sa.func.hashtext("crm.settings:" + key))))

    async def get(self, key: str) -> Setting | None:
        """The override of ``key``, if any (read fresh, not from the session's cache)."""
        query = select(Setting).where(col(Setting.key) == key).execution_options(populate_existing=True)
        return (await self.session.execute(query)).scalar_one_or_none()

    async def all(self) -> Sequence[Setting]:
        """Every override."""
        return (await self.session.execute(select(Setting).order_by(col(Setting.key)))).scalars().all()

    async def upsert(self, key: str, stored: str, *, secret: bool, actor: User) -> None:
        """Write the override of ``key`` (``stored`` is already sealed for secrets)."""
        values = {
            "key": key,
            "value": stored,
            "is_secret": secret,
            "updated_at": utcnow(),
            "updated_by_id": actor.id,
            "updated_by_email": actor.email,
        }
        statement = insert(Setting).values(**values)
        await self.session.execute(
            statement.on_conflict_do_update(
                index_elements=["key"], set_={name: statement.excluded[name] for name in values if name != "key"}
            )
        )

    async def delete(self, key: str) -> bool:
        """Remove the override of ``key``; whether there was one."""
        result = await self.session.execute(delete(Setting).where(col(Setting.key) == key).returning(col(Setting.key)))
        return result.first() is not None

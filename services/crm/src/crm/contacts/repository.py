"""Queries over contacts, limited to what a user may see."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from crm.deals.access import is_admin, visible_deals
from crm.models import Contact, Deal, Stage, User


def visible_contacts(user: User) -> ColumnElement[bool]:
    """Admins see every contact; a manager those with at least one deal visible to them."""
    if is_admin(user):
        return sa.true()
    return sa.exists().where(col(Deal.contact_id) == col(Contact.id), visible_deals(user))


def _name_prefix(prefix: str) -> ColumnElement[bool]:
    # A range over lower(name) with text_pattern_ops operators: the same index as
    # LIKE 'prefix%', but also under generic (prepared) plans, and no LIKE escaping.
    name = sa.func.lower(col(Contact.name))
    lower = prefix.lower()
    condition: ColumnElement[bool] = name.op("~>=~")(lower)
    last = ord(lower[-1])
    if last < 0x10FFFF:
        condition = sa.and_(condition, name.op("~<~")(lower[:-1] + chr(last + 1)))
    return condition


class ContactRepository:
    """Contacts as a user sees them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(
        self, user: User, *, q: str | None, platform: str | None, after_id: int | None, limit: int
    ) -> list[Contact]:
        """Up to ``limit`` visible contacts, newest first, after ``after_id``."""
        query = select(Contact).where(visible_contacts(user))
        if q:
            query = query.where(_name_prefix(q))
        if platform is not None:
            query = query.where(col(Contact.platform) == platform)
        if after_id is not None:
            query = query.where(col(Contact.id) < after_id)
        query = query.order_by(col(Contact.id).desc()).limit(limit)
        return list((await self.session.execute(query)).scalars().all())

    async def get_visible(self, user: User, contact_id: int) -> Contact | None:
        """The contact if ``user`` may see it."""
        query = select(Contact).where(col(Contact.id) == contact_id, visible_contacts(user))
        return (await self.session.execute(query)).scalar_one_or_none()

    async def deals_of(self, user: User, contact_id: int) -> list[tuple[Deal, Stage]]:
        """The contact's deals ``user`` may see, newest first."""
        query = (
            select(Deal, Stage)
            .join(Stage, col(Stage.id) == col(Deal.stage_id))
            .where(col(Deal.contact_id) == contact_id, visible_deals(user))
            .order_by(col(Deal.created_at).desc(), col(Deal.id).desc())
            .limit(500)
        )
        return [(row[0], row[1]) for row in (await self.session.execute(query)).all()]

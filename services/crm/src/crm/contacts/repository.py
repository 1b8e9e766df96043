"""Queries over contacts, limited to what a user may see.

A page of contacts is the newest ones that pass the filters, so how it is found depends
on how many contacts a name prefix matches (counted up to ``FEW_NAMES`` from the name
index) and how many of those the user may see (a manager: the contacts of their own
deals and of unassigned ones).

- A few names: they are read from the name index (the planner's estimate for a prefix
  can be off several times over, so they are counted) and, for a manager, each one's
  deals are looked up.
- Many names, or none asked for: the contacts are walked newest first until the page is
  full, which is quick whenever the matches are not rare. A manager's walk stops after
  the newest ``RECENT_CONTACTS``; if the page is still not full (the manager sees few of
  the matches), the older contacts with the prefix are intersected with the contacts of the
  manager's visible deals, both sets read from indexes alone (the name index and the
  deals' visibility index). That costs time in proportion to the two sets, never a
  probe of the deals for each of tens of thousands of names.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from crm.deals.access import is_admin, visible_deal_scopes, visible_deals
from crm.models import Contact, Deal, Stage, User

FEW_NAMES = 5_000
"""Up to this many contacts with a name prefix are read from the name index and checked one by one."""
RECENT_CONTACTS = 10_000
"""How many of the newest contacts a manager's listing walks before intersecting sets instead."""


def visible_contacts(user: User) -> ColumnElement[bool]:
    """Admins see every contact; a manager those with at least one deal visible to them."""
    if is_admin(user):
        return sa.true()
    return sa.exists().where(col(Deal.contact_id) == col(Contact.id), visible_deals(user))


_SURROGATES = range(0xD800, 0xE000)
_LAST_CHARACTER = 0x10FFFF


def prefix_end(prefix: str) -> str | None:
    """The first text after every text starting with ``prefix``, in code point order (the
    byte order of UTF-8, that of ``text_pattern_ops``); None when nothing comes after.

    The last character is stepped to the next one text can hold: surrogates (U+D800 to
    U+DFFF) are skipped, since they are not characters and PostgreSQL refuses them, and a
    last U+10FFFF is dropped and the one before stepped instead.
    """
    stem = prefix
    while stem:
        last = ord(stem[-1])
        stem = stem[:-1]
        if last < _LAST_CHARACTER:
            following = last + 1
            return stem + chr(_SURROGATES.stop if following in _SURROGATES else following)
    return None


def _name_prefix(name_column: Any, prefix: str) -> ColumnElement[bool]:
    # A range over lower(name) with text_pattern_ops operators: the same index as
    # LIKE 'prefix%', but also under generic (prepared) plans, and no LIKE escaping.
    name = sa.func.lower(name_column)
    lower = prefix.lower()
    condition: ColumnElement[bool] = name.op("~>=~")(lower)
    end = prefix_end(lower)
    if end is not None:
        condition = sa.and_(condition, name.op("~<~")(end))
    return condition


def _before(before_id: int | None) -> list[ColumnElement[bool]]:
    return [col(Contact.id) < before_id] if before_id is not None else []


def _platform(platform: str | None) -> list[ColumnElement[bool]]:
    return [col(Contact.platform) == platform] if platform is not None else []


class ContactRepository:
    """Contacts as a user sees them."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def page(
        self, user: User, *, q: str | None, platform: str | None, after_id: int | None, limit: int
    ) -> list[Contact]:
        """Up to ``limit`` visible contacts, newest first, after ``after_id``."""
        if q and await self._few_names(q, after_id):
            return await self._named(user, q, platform, after_id, limit, few=True)
        if is_admin(user):
            # Every contact is visible and matches are not rare: a newest-first walk fills the page.
            filters = [*_before(after_id), *_platform(platform)]
            if q:
                filters.append(_name_prefix(col(Contact.name), q))
            return await self._contacts(select(Contact).where(*filters), limit)
        found = await self._recent(user, q, platform, after_id, limit)
        if len(found) >= limit:
            return found
        # The walk did not fill the page: is there anything older than what it looked at?
        window = _newest(select(col(Contact.id)), after_id).subquery("window")
        seen, oldest_seen = (await self.session.execute(select(sa.func.count(), sa.func.min(window.c.id)))).one()
        if seen < RECENT_CONTACTS:
            return found
        if q:
            return found + await self._named(user, q, platform, oldest_seen, limit - len(found), few=False)
        # No prefix: most contacts are candidates, so probing each for a visible deal stays cheap.
        older = select(Contact).where(*_before(oldest_seen), *_platform(platform), visible_contacts(user))
        return found + await self._contacts(older, limit - len(found))

    async def _contacts(self, query: Select[Any], limit: int) -> list[Contact]:
        result = await self.session.execute(query.order_by(col(Contact.id).desc()).limit(limit))
        return list(result.scalars().all())

    async def _few_names(self, q: str, before_id: int | None) -> bool:
        """Whether fewer than ``FEW_NAMES`` contacts (before ``before_id``) have a name starting with ``q``."""
        sample = select(sa.literal(1)).where(_name_prefix(col(Contact.name), q), *_before(before_id))
        count = await self.session.scalar(select(sa.func.count()).select_from(sample.limit(FEW_NAMES).subquery()))
        return int(count or 0) < FEW_NAMES

    async def _recent(
        self, user: User, q: str | None, platform: str | None, after_id: int | None, limit: int
    ) -> list[Contact]:
        """The visible matches among the newest ``RECENT_CONTACTS`` contacts (after ``after_id``)."""
        recent = aliased(Contact, _newest(select(Contact), after_id).subquery("recent"))
        conditions: list[ColumnElement[bool]] = [
            sa.exists().where(col(Deal.contact_id) == col(recent.id), visible_deals(user))
        ]
        if q:
            conditions.append(_name_prefix(col(recent.name), q))
        if platform is not None:
            conditions.append(col(recent.platform) == platform)
        query: Select[Any] = select(recent).where(*conditions).order_by(col(recent.id).desc()).limit(limit)
        return list((await self.session.execute(query)).scalars().all())

    async def _named(
        self, user: User, q: str, platform: str | None, before_id: int | None, limit: int, *, few: bool
    ) -> list[Contact]:
        """Visible contacts (before ``before_id``) whose name starts with ``q``, from the name index."""
        # OFFSET 0 keeps the contacts with the prefix a subquery of its own (read from the
        # name index alone when no platform is asked for), so the planner cannot turn the
        # visibility test around into a walk over every contact or deal.
        named = (
            select(col(Contact.id).label("id"))
            .where(_name_prefix(col(Contact.name), q), *_before(before_id), *_platform(platform))
            .offset(0)
            .subquery("named")
        )
        ids = select(named.c.id).order_by(named.c.id.desc()).limit(limit)
        scopes = visible_deal_scopes(user)
        if scopes is not None and few:
            # A few names: each one's deals are looked up in the index.
            ids = ids.where(sa.exists().where(col(Deal.contact_id) == named.c.id, visible_deals(user)))
        elif scopes is not None:
            # Many: they are looked up in hashed sets, the contacts of the user's own deals
            # and of the unassigned ones, each read from the visibility index alone.
            ids = ids.where(sa.or_(*(named.c.id.in_(select(col(Deal.contact_id)).where(scope)) for scope in scopes)))
        # The page of ids is a subquery of its own too: its few rows are then looked up by key.
        return await self._contacts(select(Contact).where(col(Contact.id).in_(ids.subquery("page").select())), limit)

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


def _newest(query: Select[Any], after_id: int | None) -> Select[Any]:
    """``query`` over the newest ``RECENT_CONTACTS`` contacts after ``after_id``, newest first."""
    return query.where(*_before(after_id)).order_by(col(Contact.id).desc()).limit(RECENT_CONTACTS)

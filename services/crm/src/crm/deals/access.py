"""Which deals a user may see: admins all of them, managers their own and unassigned ones.

Everything a manager can reach through a deal (messages, activities, its contact, search
hits, pipeline figures) goes through this one rule, so it cannot drift between endpoints.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col

from crm.models import Deal, User


def is_admin(user: User) -> bool:
    """Whether ``user`` has the admin role."""
    return user.role == "admin"


def visible_deals(user: User) -> ColumnElement[bool]:
    """A WHERE clause over ``deals`` that keeps what ``user`` may see."""
    scopes = visible_deal_scopes(user)
    return sa.true() if scopes is None else sa.or_(*scopes)


def visible_deal_scopes(user: User) -> list[ColumnElement[bool]] | None:
    """The same rule as disjoint WHERE clauses (None: everything), for queries that read each
    as a range of an index and combine them, rather than filter every deal by ``visible_deals``."""
    if is_admin(user):
        return None
    return [col(Deal.assignee_id) == user.id, col(Deal.assignee_id).is_(None)]

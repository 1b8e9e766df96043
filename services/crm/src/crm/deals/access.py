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
    if is_admin(user):
        return sa.true()
    return sa.or_(col(Deal.assignee_id) == user.id, col(Deal.assignee_id).is_(None))

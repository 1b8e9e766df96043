"""Reading contacts. Never commits."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from crm.models import Contact, Deal, Stage, User
from crm.web.errors import BadRequest, NotFound
from crm.web.pagination import CursorCodec, InvalidCursor

from .repository import ContactRepository

_KIND = "contacts"


async def list_contacts(
    session: AsyncSession,
    user: User,
    cursors: CursorCodec,
    *,
    q: str | None,
    platform: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Contact], str | None]:
    """A page of visible contacts and the cursor of the next page."""
    after_id = None
    if cursor is not None:
        try:
            position = cursors.decode(cursor, _KIND)
        except InvalidCursor as exc:
            raise BadRequest(f"Invalid cursor: {exc}") from None
        if len(position) != 1 or not isinstance(position[0], int):
            raise BadRequest("Invalid cursor: malformed cursor")
        after_id = position[0]
    contacts = await ContactRepository(session).page(user, q=q, platform=platform, after_id=after_id, limit=limit + 1)
    if len(contacts) <= limit:
        return contacts, None
    contacts = contacts[:limit]
    return contacts, cursors.encode(_KIND, [contacts[-1].id])


async def get_contact(session: AsyncSession, user: User, contact_id: int) -> tuple[Contact, list[tuple[Deal, Stage]]]:
    """A visible contact with its visible deals; :class:`NotFound` otherwise."""
    repository = ContactRepository(session)
    contact = await repository.get_visible(user, contact_id)
    if contact is None:
        raise NotFound("Contact not found")
    return contact, await repository.deals_of(user, contact_id)

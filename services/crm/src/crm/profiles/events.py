"""What a fetched profile changes for the people who see the customer, as ``crm.contact.updated``.

Only what a user sees counts: the display name (the name, else @username, else the
platform id), the username and the picture. A profile fetched again unchanged, or a
change that shows the same display name (a space more around the name), announces
nothing.
"""

from __future__ import annotations

from typing import Any

from crm.conversation.repository import ContactRow
from crm.deals.events import contact_ref, display_name
from jggl_common.contracts import ContactDeal, ContactUpdated, ContactUpdatedData

__all__ = ["PRODUCER", "contact_updated", "visible_changes"]

PRODUCER = "crm"


def visible_changes(old: ContactRow, new: ContactRow) -> dict[str, tuple[Any, Any]]:
    """The fields a user sees that differ between ``old`` and ``new``, as (old, new)."""
    seen = {
        "display_name": (display_name(old), display_name(new)),
        "username": (old.username, new.username),
        "avatar_url": (old.avatar_url, new.avatar_url),
    }
    return {field: values for field, values in seen.items() if values[0] != values[1]}


def contact_updated(
    contact: ContactRow,
    changes: dict[str, tuple[Any, Any]],
    open_deals: list[ContactDeal],
    *,
    correlation_id: str | None,
) -> ContactUpdated:
    """The event announcing ``changes`` of ``contact``, with the contact's open deals."""
    return ContactUpdated(
        producer=PRODUCER,
        correlation_id=correlation_id,
        data=ContactUpdatedData(contact=contact_ref(contact), changes=changes, open_deals=open_deals),
    )

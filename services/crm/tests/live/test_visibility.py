"""Who receives ``crm.contact.updated`` on the live stream, decided from the event alone."""

from __future__ import annotations

from typing import Any

import pytest

from crm.live.visibility import LIVE_EVENTS, visible_to


def contact_updated(open_deals: Any) -> dict[str, Any]:
    return {"type": "crm.contact.updated", "data": {"contact": {"id": 1}, "changes": {}, "open_deals": open_deals}}


def test_the_live_stream_carries_contact_updates() -> None:
    assert "crm.contact.updated" in LIVE_EVENTS
    assert LIVE_EVENTS[-1] == "crm.channel.health_changed"  # the admins' event stays last


@pytest.mark.parametrize(
    ("open_deals", "sees"),
    [
        ([{"id": 1, "assignee_id": 7}], True),
        ([{"id": 1, "assignee_id": None}], True),
        ([{"id": 1, "assignee_id": 8}], False),
        ([{"id": 1, "assignee_id": 8}, {"id": 2, "assignee_id": 7}], True),
        ([], False),
    ],
)
def test_a_manager_receives_it_for_an_open_deal_of_theirs_or_an_unassigned_one(open_deals: Any, sees: bool) -> None:
    event = contact_updated(open_deals)
    assert visible_to(event, user_id=7, admin=False) is sees
    assert visible_to(event, user_id=7, admin=True)


@pytest.mark.parametrize(
    "open_deals", [None, "7", [{"id": 1}], [{"id": 1, "assignee_id": "7"}], [7], {"assignee_id": None}]
)
def test_a_malformed_one_reaches_no_manager(open_deals: Any) -> None:
    assert not visible_to(contact_updated(open_deals), user_id=7, admin=False)

"""Shapes of Meta's webhook references crm reads without help from ingest's parser: a
``user_ref`` person (Chat or checkbox plugin) is deliberately ignored, not a dead letter;
a time in seconds (the ``field``/``value`` examples) is read as seconds."""

from __future__ import annotations

from typing import Any

import pytest

from crm.inbound.items import Ignored, InvalidMetaItem, NewMessage, ParsedItem, ReferralOnly, from_ms, parse_item
from jggl_common.contracts import MetaItemData

PAGE, PSID = "104857600123456", "2460000000000001"


def data(kind: str, item: dict[str, Any], **fields: Any) -> MetaItemData:
    sender = item.get("sender", {}).get("id")
    return MetaItemData(
        object="page",
        kind=kind,
        entry_id=PAGE,
        sender_id=sender,
        recipient_id=PAGE,
        dedupe_key=f"test:{kind}:{sender}",
        item=item,
        **fields,
    )


@pytest.mark.parametrize(
    ("kind", "item"),
    [
        (
            "postback",
            {
                "sender": {"user_ref": "USER-REF-ID"},
                "recipient": {"id": PAGE},
                "timestamp": "1527459824",
                "postback": {"mid": "m_1", "title": "TITLE-FOR-THE-CTA", "payload": "USER-DEFINED-PAYLOAD"},
            },
        ),
        (
            "referral",
            {
                "sender": {"user_ref": "ref-42"},
                "recipient": {"id": PAGE},
                "timestamp": 1458692752478,
                "referral": {"ref": "x", "source": "CUSTOMER_CHAT_PLUGIN", "type": "OPEN_THREAD"},
            },
        ),
    ],
    ids=["postback", "referral"],
)
def test_a_user_ref_person_is_ignored_not_refused(kind: str, item: dict[str, Any]) -> None:
    assert parse_item(data(kind, item), 0) == Ignored("a person known only by a plugin's user_ref")


def test_a_sender_with_neither_id_nor_user_ref_is_still_refused() -> None:
    with pytest.raises(InvalidMetaItem):
        parse_item(data("message", {"sender": {}, "message": {"mid": "m_1", "text": "hi"}}), 0)


def test_seconds_are_read_as_seconds_and_milliseconds_as_milliseconds() -> None:
    item = {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "message": {"mid": "m_2", "text": "test_message"}}

    in_seconds = parse_item(data("message", item, timestamp=1527459824), 0)
    in_ms = parse_item(data("message", item, timestamp=1527459824123), 0)
    from_entry = parse_item(data("message", item, entry_time=1527459825), 0)

    assert isinstance(in_seconds, ParsedItem)
    assert isinstance(in_seconds.change, NewMessage)
    assert in_seconds.context.at == from_ms(1527459824000)
    assert isinstance(in_ms, ParsedItem)
    assert in_ms.context.at_ms == 1527459824123
    assert isinstance(from_entry, ParsedItem)
    assert from_entry.context.at_ms == 1527459825000


def test_a_referral_in_seconds_carries_its_time_in_milliseconds() -> None:
    item = {
        "sender": {"id": PSID},
        "recipient": {"id": PAGE},
        "timestamp": "1527459824",
        "referral": {"ref": "spring", "source": "SHORTLINK", "type": "OPEN_THREAD"},
    }
    parsed = parse_item(data("referral", item), 0)
    assert isinstance(parsed, ParsedItem)
    assert isinstance(parsed.change, ReferralOnly)
    assert parsed.change.referral.at_ms == 1527459824000

"""What the backfill makes of the Conversations API's answers: the same messaging items,
dedupe keys and time ranges a webhook would give."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from crm.backfill import BackfillRange, graph_time, message_item
from jggl_common.contracts import utcnow

PAGE = "1000000000001"


def test_graph_times_are_read_as_utc() -> None:
    assert graph_time("2026-12-06T10:00:00+0000") == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert graph_time("2026-12-06T12:00:00+0200") == datetime(2026, 12, 6, 10, tzinfo=UTC)
    assert graph_time("yesterday") is None
    assert graph_time(None) is None


def test_a_customer_message_becomes_the_webhook_s_item() -> None:
    kind, item = message_item(
        PAGE,
        {
            "id": "m_1",
            "created_time": "2026-12-06T10:00:00+0000",
            "from": {"id": "42", "name": "Ann"},
            "to": {"data": [{"id": PAGE}]},
            "message": "Hi <b>there</b>",
            "attachments": {
                "data": [
                    {"id": "a1", "mime_type": "image/jpeg", "image_data": {"url": "https://cdn/x.jpg"}},
                    {"id": "a2", "mime_type": "audio/mpeg", "file_url": "https://cdn/x.mp3"},
                    {"id": "a3", "mime_type": "application/pdf", "file_url": "https://cdn/x.pdf"},
                    {"id": "a4", "name": "sticker"},
                ]
            },
        },
    ) or (None, None)
    assert kind == "message"
    assert item == {
        "sender": {"id": "42"},
        "recipient": {"id": PAGE},
        "timestamp": 1796551200000,
        "message": {
            "mid": "m_1",
            "text": "Hi <b>there</b>",
            "attachments": [
                {"type": "image", "payload": {"url": "https://cdn/x.jpg"}},
                {"type": "audio", "payload": {"url": "https://cdn/x.mp3"}},
                {"type": "file", "payload": {"url": "https://cdn/x.pdf"}},
            ],
        },
    }


def test_what_the_page_sent_is_an_echo() -> None:
    found = message_item(
        PAGE,
        {"id": "m_2", "created_time": "2026-12-06T10:00:01+0000", "from": {"id": PAGE}, "to": {"data": [{"id": "42"}]}},
    )
    assert found is not None
    kind, item = found
    assert kind == "echo"
    assert item["message"] == {"mid": "m_2", "is_echo": True}


@pytest.mark.parametrize(
    "broken",
    [
        {"created_time": "2026-12-06T10:00:00+0000", "from": {"id": "1"}, "to": {"data": [{"id": PAGE}]}},
        {"id": "m", "from": {"id": "1"}, "to": {"data": [{"id": PAGE}]}},
        {"id": "m", "created_time": "2026-12-06T10:00:00+0000", "to": {"data": [{"id": PAGE}]}},
        {"id": "m", "created_time": "2026-12-06T10:00:00+0000", "from": {"id": "1"}, "to": {"data": []}},
        {"id": "m", "created_time": "2026-12-06T10:00:00+0000", "from": {}, "to": {"data": [{"id": PAGE}]}},
    ],
)
def test_a_message_missing_its_id_time_or_parties_is_skipped(broken: dict[str, object]) -> None:
    assert message_item(PAGE, broken) is None


def test_an_admin_s_range_must_make_sense() -> None:
    now = utcnow()
    assert BackfillRange().since is None
    assert BackfillRange(since=now - timedelta(days=2)).until is None
    for bad in (
        {"until": now},
        {"since": now - timedelta(hours=1), "until": now - timedelta(hours=2)},
        {"since": now - timedelta(days=31)},
        {"since": now + timedelta(hours=1)},
        {"since": "2026-12-06T10:00:00"},  # no time zone
        {"since": now - timedelta(hours=1), "page": 1},
    ):
        with pytest.raises(ValidationError):
            BackfillRange.model_validate(bad)

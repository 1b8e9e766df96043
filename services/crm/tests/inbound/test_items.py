"""The item reader against arbitrary input: it understands Meta's shapes or says why not."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm.inbound.items import Ignored, InvalidMetaItem, NewMessage, ParsedItem, parse_item
from jggl_common.meta import split_webhook
from jggl_sandbox.meta_webhooks import PLATFORMS, every_variant, webhook

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(
    [
        "message",
        "postback",
        "reaction",
        "read",
        "delivery",
        "message_edit",
        "referral",
        "optin",
        "mid",
        "text",
        "attachments",
        "payload",
        "is_echo",
        "is_deleted",
        "watermark",
        "mids",
        "num_edit",
        "reply_to",
        "quick_reply",
    ]
)
payloads = st.dictionaries(keys, json_values | st.dictionaries(keys, json_values, max_size=5), max_size=5)


def _items(page: str, body: dict[str, Any]) -> list[Any]:
    item = {"sender": {"id": "1234567"}, "recipient": {"id": page}, "timestamp": 1_767_225_600_000, **body}
    _, datas = split_webhook(webhook("messenger", page, [item], time_ms=1))
    return datas


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=payloads)
def test_any_item_is_read_or_refused_with_a_reason(body: dict[str, Any]) -> None:
    for data in _items("99887766", body):
        refusal = ""
        try:
            result: object = parse_item(data, fallback_ms=0)
        except InvalidMetaItem as exc:
            result, refusal = None, str(exc)
        assert isinstance(result, ParsedItem | Ignored) or refusal


@given(text=st.text(min_size=1, max_size=50))
def test_text_survives_except_for_nul_characters(text: str) -> None:
    (data,) = _items("99887766", {"message": {"mid": "m_1", "text": text}})
    result = parse_item(data, fallback_ms=0)
    assert isinstance(result, ParsedItem)
    assert isinstance(result.change, NewMessage)
    assert result.change.text == text.replace("\x00", "")


def test_numbers_that_only_look_like_digits_are_not_an_error() -> None:
    # "²" passes str.isdigit() and int() refuses it; Meta's fields must never crash the reader.
    for body in (
        {"read": {"watermark": "²"}},
        {"delivery": {"watermark": "²", "mids": ["m_1"]}},
        {"message_edit": {"mid": "m_1", "text": "new", "num_edit": "²"}},
        {"message": {"mid": "m_2", "text": "hi"}, "timestamp": "²"},
    ):
        item = {"sender": {"id": "1234567"}, "recipient": {"id": "99887766"}, **body}
        item.setdefault("timestamp", 1_767_225_600_000)
        for data in split_webhook(webhook("messenger", "99887766", [item], time_ms=1))[1]:
            try:
                result: object = parse_item(data, fallback_ms=1_767_225_600_000)
            except InvalidMetaItem:
                continue
            assert isinstance(result, ParsedItem | Ignored)


def test_every_simulator_variant_is_understood() -> None:
    for platform in PLATFORMS:
        for name, kind, item in every_variant(platform, page_id="55443322"):
            (data,) = split_webhook(webhook(platform, "55443322", [item], time_ms=1))[1]
            result = parse_item(data, fallback_ms=0)
            assert isinstance(result, Ignored) == (kind == "other"), name

"""Arbitrary input from the internet: never a 5xx, and nothing stored without a valid signature."""

from __future__ import annotations

import itertools
import json
import secrets
from typing import Any

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from ingest.meta import MalformedWebhook, split_webhook, verify_signature
from jggl_common.contracts import META_KINDS

RUN = secrets.token_hex(4)
_examples = itertools.count()

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


def mostly(good: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[Any]:
    """Well-typed four times in five, anything JSON (or ``wrong``) otherwise."""
    return st.integers(min_value=0, max_value=4).flatmap(lambda n: good if n else wrong)


ids = st.from_regex(r"\A[1-9][0-9]{5,16}\Z")
odd_numbers = st.sampled_from(["²", "١٢٣", "1" * 5000, "", "-5", "0x1f", " 12"])
party = mostly(st.fixed_dictionaries({"id": mostly(ids, st.one_of(st.integers(), odd_numbers, json_values))}))
timestamps = mostly(st.integers(min_value=0, max_value=2**53), st.one_of(ids, odd_numbers, json_values))
mids = mostly(st.uuids().map(lambda u: "m_" + u.hex), st.one_of(st.text(max_size=4), json_values))
payload_fields = st.fixed_dictionaries(
    {},
    optional={
        "mid": mids,
        "text": st.text(max_size=12),
        "is_echo": st.one_of(st.booleans(), st.sampled_from(["true", "false", "TRUE", 1])),
        "is_deleted": st.one_of(st.booleans(), st.sampled_from(["true", "True", 0])),
        "mids": mostly(st.lists(mids, max_size=2)),
        "watermark": timestamps,
        "num_edit": mostly(st.integers(0, 5)),
        "action": st.sampled_from(["react", "unreact", ""]),
        "reaction": st.text(max_size=6),
        "payload": st.text(max_size=8),
    },
)
PAYLOAD_KEYS = ["message", "postback", "reaction", "read", "delivery", "message_edit", "referral", "optin"]
items = st.builds(
    lambda base, payload, extra: {**extra, **base, **payload},
    st.fixed_dictionaries({"sender": party, "recipient": party, "timestamp": timestamps}),
    st.dictionaries(st.sampled_from(PAYLOAD_KEYS), mostly(payload_fields), max_size=2),
    st.dictionaries(st.text(max_size=6), json_values, max_size=2),
)
wrapped_items = mostly(
    items, st.one_of(st.builds(lambda value: {"field": "messaging_postbacks", "value": value}, items), json_values)
)
entries = st.fixed_dictionaries(
    {
        "id": mostly(ids, st.one_of(st.integers(), odd_numbers, json_values)),
        "messaging": mostly(st.lists(wrapped_items, min_size=1, max_size=3)),
    },
    optional={
        "time": timestamps,
        "standby": mostly(st.lists(wrapped_items, max_size=2)),
        "changes": mostly(st.lists(wrapped_items, max_size=2)),
    },
)
webhooks = st.fixed_dictionaries(
    {
        "object": mostly(
            st.sampled_from(["page", "instagram"]), st.one_of(st.just("whatsapp_business_account"), json_values)
        ),
        "entry": mostly(st.lists(mostly(entries), min_size=1, max_size=2)),
    }
)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: ("json", v)),
    webhooks.map(lambda v: ("json", v)),
    webhooks.map(lambda v: ("json-utf8", v)),
)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)
signatures = st.one_of(
    st.sampled_from(["valid", "valid-upper", "absent", "other-secret", "truncated"]),
    header_text.map(lambda text: ("random", text)),
)


def _would_store(raw: bytes) -> str:
    """A label for the statistics: whether the body holds items a signed request would store."""
    try:
        _, found = split_webhook(json.loads(raw))
    except (ValueError, RecursionError):
        return "nothing to store"
    return "items to store" if found else "nothing to store"


def _encode(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    how, value = body
    return json.dumps(value, separators=(",", ":"), ensure_ascii=(how == "json")).encode()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    body=bodies,
    signature=signatures,
    content_type=st.one_of(st.none(), st.just("application/json"), header_text),
    correlation=st.one_of(st.none(), header_text),
)
@example(body=b"", signature="valid", content_type=None, correlation=None)
@example(body=("json", {"object": "page", "entry": []}), signature="absent", content_type=None, correlation="")
@example(
    body=("json", {"object": "page", "entry": [{"id": "1", "time": "²", "messaging": [{"timestamp": "1" * 5000}]}]}),
    signature="valid",
    content_type=None,
    correlation=None,
)
async def test_arbitrary_requests_never_get_a_5xx_and_only_signed_ones_are_stored(
    ingest, meta, stream, body, signature, content_type, correlation
) -> None:
    # Every event of a request carries its correlation id: a unique prefix finds this example's.
    marker = f"fz{RUN}-{next(_examples)}|"
    raw = _encode(body)
    good = meta.sign(raw)
    header = (
        {
            "valid": good,
            "valid-upper": "sha256=" + good.removeprefix("sha256=").upper(),
            "absent": None,
            "other-secret": meta.sign(raw, secret="someone-else"),
            "truncated": good[:-2],
        }.get(signature)
        if isinstance(signature, str)
        else signature[1]
    )
    validly_signed = signature in ("valid", "valid-upper")
    headers = {}
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers["X-Correlation-ID"] = (marker + (correlation or ""))[:128]
    await stream.mark()
    before = await ingest.metrics()

    response = await ingest.client.post(
        "/webhooks/meta",
        content=raw,
        headers={
            k: v.encode("latin-1") for k, v in {**headers, "X-Hub-Signature-256": header}.items() if v is not None
        },
    )

    assert response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json")
    after = await ingest.metrics()
    published = after.value("ingest_events_published_total") - before.value("ingest_events_published_total")
    duplicates = after.value("ingest_duplicates_total") - before.value("ingest_duplicates_total")
    stored = [m for m in await stream.read() if str(m.event.get("correlation_id")).startswith(marker)]
    if validly_signed:
        assert response.status_code in (200, 400), response.text
    else:
        assert response.status_code in (401, 403), response.text
    if response.status_code == 200:
        assert published + duplicates == response.json()["events"]
    else:
        assert published + duplicates == 0
        assert after.value("ingest_publish_seconds_count") == before.value("ingest_publish_seconds_count")
    assert len(stored) == published
    event(f"{'signed' if validly_signed else 'unsigned'} -> {response.status_code}, {_would_store(raw)}")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.one_of(webhooks, json_values))
@example(payload={"object": "page", "entry": [{"id": "1", "time": "²", "messaging": [{"timestamp": "٣"}]}]})
@example(payload={"object": "page", "entry": [{"id": "1", "messaging": [{"timestamp": "9" * 5000}]}]})
def test_split_webhook_returns_items_or_raises_malformed_webhook(payload) -> None:
    try:
        object_, found = split_webhook(payload)
    except MalformedWebhook:
        return
    if object_ is None:
        assert found == []
        assert payload["object"] not in ("page", "instagram")
        return
    assert object_ == payload["object"]
    expected = sum(len(entry.get("messaging", [])) + len(entry.get("standby", [])) for entry in payload["entry"])
    changes = sum(
        1
        for entry in payload["entry"]
        for raw in entry.get("changes", [])
        if "field" in raw and isinstance(raw.get("value"), dict)
    )
    assert len(found) == expected + changes
    assert split_webhook(payload) == (object_, found)  # the same input gives the same keys
    for item in found:
        assert item.object == object_
        assert item.kind in META_KINDS
        assert item.timestamp is None or isinstance(item.timestamp, int)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=200), secret=st.text(min_size=1, max_size=20), flip=st.integers(min_value=0))
def test_a_signature_holds_for_its_body_only(body, secret, flip) -> None:
    import hashlib
    import hmac

    header = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    assert verify_signature(body, header, secret)
    assert verify_signature(body, header.upper().replace("SHA256=", "sha256="), secret)
    if body:
        position = flip % len(body)
        changed = body[:position] + bytes([body[position] ^ 0x01]) + body[position + 1 :]
        assert not verify_signature(changed, header, secret)
    assert not verify_signature(body + b" ", header, secret)
    assert not verify_signature(body, header, secret + "x")

"""Meta's webhook bodies: the signature check, and the split of a POST into one
:class:`~jggl_common.contracts.MetaItemData` per item, as ingest publishes them.

The one reader of Meta's envelopes: ingest runs it on every webhook, and crm's tests
turn simulated webhooks into ingest's events with it, so both read the same shapes
(docs/protocols.md, "Meta webhooks"). Pure functions, no I/O: the property tests drive
them with arbitrary input.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from jggl_common.contracts import MetaItemData, message_dedupe_key
from jggl_common.numbers import loose_int

__all__ = ["MalformedWebhook", "classify", "meta_ms", "split_webhook", "verify_signature"]

SUPPORTED_OBJECTS = frozenset({"page", "instagram"})
_SECONDS_BELOW = 10**11
_SHA256_HEX_LENGTH = 64
# Payload keys of a messaging item, in the order they decide its kind.
_KIND_BY_KEY = (
    ("message_edit", "edit"),
    ("reaction", "reaction"),
    ("postback", "postback"),
    ("read", "read"),
    ("delivery", "delivery"),
    ("referral", "referral"),
)


class MalformedWebhook(ValueError):
    """The body is signed correctly but is not a Meta webhook we can split."""


def verify_signature(body: bytes, header: str | None, app_secret: str) -> bool:
    """Check ``X-Hub-Signature-256`` over the raw body, in constant time.

    The header is ``sha256=`` followed by the hex HMAC; hex digits are compared
    case-insensitively (Meta sends lowercase; some proxies do not preserve it).
    """
    if not header or not app_secret:
        return False
    scheme, _, digest = header.strip().partition("=")
    if scheme.lower() != "sha256" or len(digest) != _SHA256_HEX_LENGTH:
        return False
    expected = hmac.digest(app_secret.encode(), body, hashlib.sha256).hex()
    return hmac.compare_digest(expected.encode(), digest.lower().encode("ascii", "replace"))


def _id(party: Any) -> str | None:
    if isinstance(party, dict):
        value = party.get("id")
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
    return None


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _unwrap(item: dict[str, Any]) -> dict[str, Any]:
    """The newer ``{"field": ..., "value": {...}}`` shape carries the item in ``value``."""
    value = item.get("value")
    if "field" in item and isinstance(value, dict):
        return value
    return item


def classify(item: dict[str, Any]) -> tuple[str, str | None]:
    """The ingest kind of a messaging item and the Meta message id it is about."""
    message = item.get("message")
    if isinstance(message, dict):
        mid = message.get("mid") if isinstance(message.get("mid"), str) else None
        return ("echo" if _truthy(message.get("is_echo")) else "message"), mid
    for key, kind in _KIND_BY_KEY:
        payload = item.get(key)
        if isinstance(payload, dict):
            mid = payload.get("mid")
            return kind, mid if isinstance(mid, str) else None
    return "other", None


def _dedupe_key(
    object_: str, kind: str, item: dict[str, Any], sender: str | None, ts: int | None, mid: str | None, entry_id: str
) -> str:
    """A key equal for repeats of the same item and different for different items."""
    if kind == "other":
        # Opt-ins, handovers, comments...: often no sender, time or id of their own, so
        # the key is the entry and the whole item (two comments never share one).
        canonical = json.dumps(item, sort_keys=True, separators=(",", ":"))
        return f"{object_}:other:{entry_id}:{hashlib.sha256(canonical.encode()).hexdigest()[:40]}"
    if kind in ("message", "echo") and mid:
        message = item["message"]
        # A delete reuses the mid of the message it deletes: it is a different item.
        if _truthy(message.get("is_deleted")):
            return f"{object_}:delete:{mid}"
        return message_dedupe_key(object_, kind, mid)
    payload = item.get({"edit": "message_edit"}.get(kind, kind))
    detail = ""
    if isinstance(payload, dict):
        parts = [
            str(payload.get(name))
            for name in ("mid", "num_edit", "action", "reaction", "emoji", "watermark", "payload", "ref")
            if name in payload
        ]
        mids = payload.get("mids")
        if isinstance(mids, list):
            parts.append(",".join(str(m) for m in mids))
        detail = "|".join(parts)
    return f"{object_}:{kind}:{sender}:{_id(item.get('recipient'))}:{ts}:{detail}"


def meta_ms(value: Any) -> int | None:
    """A Meta timestamp in milliseconds. Items carry milliseconds, but the ``field``/``value``
    examples carry seconds as a string (``"1527459824"``): a value below 10^11 (March 1973
    in milliseconds, year 5138 in seconds) is seconds."""
    number = loose_int(value)
    if number is not None and 0 < number < _SECONDS_BELOW:
        return number * 1000
    return number


def split_webhook(payload: Any) -> tuple[str | None, list[MetaItemData]]:
    """Every item of every entry's ``messaging[]``, ``standby[]`` and ``changes[]`` as its own event.

    Returns ``(object, items)``; ``object`` is None and no items are returned for an
    object this system does not handle (the webhook is acknowledged and ignored).
    A JSON array of webhooks (how Meta's Instagram examples page shows a notification)
    is split envelope by envelope. Raises :class:`MalformedWebhook` when the body does
    not have Meta's shape.
    """
    if isinstance(payload, list) and payload:
        found = [_split_one(envelope) for envelope in payload]
        handled = [object_ for object_, _ in found if object_ is not None]
        return (handled[0] if handled else None), [item for _, items in found for item in items]
    return _split_one(payload)


def _entry_changes(entry: dict[str, Any]) -> Any:
    """``changes[]``, plus the one change an entry may carry itself (``{"id", "time",
    "field", "value"}``, how Meta's Instagram examples page shows comments)."""
    changes = entry.get("changes", [])
    if "field" in entry and "value" in entry and isinstance(changes, list):
        return [*changes, {"field": entry["field"], "value": entry["value"]}]
    return changes


def _split_one(payload: Any) -> tuple[str | None, list[MetaItemData]]:
    if not isinstance(payload, dict):
        raise MalformedWebhook("body must be a JSON object (or an array of them)")
    object_ = payload.get("object")
    if not isinstance(object_, str):
        raise MalformedWebhook("'object' must be a string")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise MalformedWebhook("'entry' must be a list")
    if object_ not in SUPPORTED_OBJECTS:
        return None, []
    out: list[MetaItemData] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise MalformedWebhook("each entry must be an object")
        entry_id = entry.get("id")
        if not isinstance(entry_id, (str, int)) or isinstance(entry_id, bool):
            raise MalformedWebhook("each entry needs an 'id'")
        entry_time = meta_ms(entry.get("time"))
        for field, standby in (("messaging", False), ("standby", True), ("changes", False)):
            items = _entry_changes(entry) if field == "changes" else entry.get(field, [])
            if not isinstance(items, list):
                raise MalformedWebhook(f"'entry[].{field}' must be a list")
            for raw in items:
                if not isinstance(raw, dict):
                    raise MalformedWebhook(f"each entry[].{field} item must be an object")
                item = _unwrap(raw)
                if field == "changes" and item is raw:
                    continue  # a change whose value is not an object
                kind, mid = classify(item)
                sender = _id(item.get("sender"))
                ts = meta_ms(item.get("timestamp"))
                # Every field was checked above: construct without a second validation pass.
                out.append(
                    MetaItemData.model_construct(
                        object=object_,  # type: ignore[arg-type]
                        kind=kind,  # type: ignore[arg-type]
                        entry_id=str(entry_id),
                        entry_time=entry_time,
                        standby=standby,
                        sender_id=sender,
                        recipient_id=_id(item.get("recipient")),
                        timestamp=ts,
                        mid=mid,
                        dedupe_key=_dedupe_key(object_, kind, item, sender, ts, mid, str(entry_id)),
                        item=item,
                    )
                )
    return object_, out

"""What a Meta messaging item means for the CRM, read from ingest's event.

Pure functions, no I/O. Meta's item shapes are described in docs/protocols.md; the parts
that vary (``is_deleted`` as a string, postbacks without ``mid``, timestamps as
strings and in seconds in the ``field``/``value`` shape) are normalised here so the
service sees one shape per kind of change; a person known only by a plugin's
``user_ref`` is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from crm.conversation.rules import preview
from jggl_common.bus import PermanentFailure
from jggl_common.contracts import MetaItemData
from jggl_common.numbers import loose_int

__all__ = [
    "ECHO_AUTHOR",
    "Delete",
    "Delivery",
    "Edit",
    "Ignored",
    "InvalidMetaItem",
    "ItemContext",
    "NewMessage",
    "ParsedItem",
    "Reaction",
    "Read",
    "Referral",
    "ReferralOnly",
    "from_ms",
    "parse_item",
    "preview",
]

ECHO_AUTHOR = "Meta inbox"
"""Who wrote a message that reached us only as an echo: someone in Meta's own apps."""

# PSIDs, IGSIDs, Page and Instagram account ids are decimal strings.
_META_ID = re.compile(r"^[0-9]{1,64}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Below this a Meta time is in seconds (10^11 ms is March 1973; 10^11 s, year 5138).
_SECONDS_BELOW = 10**11
_KIND_MAX = 30
# Attachment types whose kind reads better under another name.
_KIND_ALIASES = {"fallback": "share", "reel": "ig_reel"}


class InvalidMetaItem(PermanentFailure, ValueError):
    """The item cannot be a real Meta messaging item (e.g. a sender id that is not an id).

    Retrying cannot help, so it goes to the DLQ at once.
    """


def _ms(value: int | None) -> int | None:
    """Meta's time in milliseconds: the ``field``/``value`` examples give seconds (below 10^11)."""
    if value is not None and 0 < value < _SECONDS_BELOW:
        return value * 1000
    return value


def from_ms(ms: int) -> datetime:
    """A Meta timestamp in milliseconds as an exact UTC datetime."""
    return _EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True, slots=True)
class ItemContext:
    """Where an item belongs: the channel, the customer, and when it happened (Meta's clock)."""

    platform: Literal["messenger", "instagram"]
    page_id: str
    customer_id: str
    at_ms: int
    dedupe_key: str

    @property
    def at(self) -> datetime:
        """The item's Meta timestamp."""
        return from_ms(self.at_ms)

    @property
    def conversation_key(self) -> tuple[str, str, str]:
        """Equal for the items of one conversation."""
        return self.platform, self.page_id, self.customer_id


@dataclass(frozen=True, slots=True)
class Referral:
    """Where the customer came from: an ad, an m.me / ig.me link, a plugin..."""

    source: str
    at_ms: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message written by the customer (``in``) or by the page in Meta's apps (``out``, an echo)."""

    mid: str
    direction: Literal["in", "out"]
    kind: str
    text: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    quick_reply_payload: str | None = None
    postback_payload: str | None = None
    reply_to_mid: str | None = None
    reply_to_story: dict[str, Any] | None = None
    app_id: str | None = None
    author_label: str | None = None
    referral: Referral | None = None


@dataclass(frozen=True, slots=True)
class ReferralOnly:
    """The customer opened the conversation from a referral without writing yet."""

    referral: Referral


@dataclass(frozen=True, slots=True)
class Reaction:
    """A reaction added (``react``) or removed (``unreact``) by ``reactor`` on message ``mid``."""

    mid: str
    reactor: str
    action: Literal["react", "unreact"]
    reaction: str | None
    emoji: str | None


@dataclass(frozen=True, slots=True)
class Edit:
    """Message ``mid`` now reads ``text``; ``num_edit`` counts the edits so far."""

    mid: str
    text: str | None
    num_edit: int


@dataclass(frozen=True, slots=True)
class Delete:
    """The customer unsent message ``mid``."""

    mid: str


@dataclass(frozen=True, slots=True)
class Read:
    """The customer read what we sent until ``watermark_ms`` (Messenger) or until message ``mid`` (Instagram)."""

    watermark_ms: int | None
    mid: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """What we sent reached the customer's device: messages ``mids`` and/or everything until ``watermark_ms``."""

    mids: tuple[str, ...]
    watermark_ms: int | None


@dataclass(frozen=True, slots=True)
class Ignored:
    """An item the CRM has nothing to do with (opt-ins, handover notices...)."""

    reason: str


Change = NewMessage | ReferralOnly | Reaction | Edit | Delete | Read | Delivery


@dataclass(frozen=True, slots=True)
class ParsedItem:
    """An item's context and the change it brings."""

    context: ItemContext
    change: Change


def _str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _storable(value: Any) -> Any:
    """``value`` without NUL characters, which PostgreSQL refuses in text and JSONB.

    A customer's message must never become a poison message over one character.
    """
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_storable(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def _meta_id(value: str | None, what: str) -> str:
    if value is None or not _META_ID.match(value):
        raise InvalidMetaItem(f"{what} {value!r} is not a Meta id")
    return value


def _attachment(raw: dict[str, Any]) -> dict[str, Any]:
    """One attachment as the CRM keeps it: ``{type, url, ...}`` with the details a manager sees."""
    type_ = _str(raw.get("type")) or "unknown"
    payload = _obj(raw.get("payload"))
    out: dict[str, Any] = {"type": type_, "url": _str(payload.get("url"))}
    title = _str(payload.get("title")) or _str(raw.get("title"))
    if title:
        out["title"] = title
    coordinates = payload.get("coordinates")
    if isinstance(coordinates, dict):
        out["lat"] = coordinates.get("lat")
        out["long"] = coordinates.get("long")
    for key in ("sticker_id", "reel_video_id", "id"):
        if payload.get(key) is not None:
            out[key] = payload[key]
    product = payload.get("product")
    if isinstance(product, dict) and isinstance(product.get("elements"), list):
        elements = [e for e in product["elements"] if isinstance(e, dict)]
        out["elements"] = elements
        if out["url"] is None and elements:
            out["url"] = _str(elements[0].get("image_url"))
    return out


def _referral(raw: Any, at_ms: int) -> Referral | None:
    if not isinstance(raw, dict):
        return None
    source = (_str(raw.get("source")) or "unknown").lower()[:50]
    return Referral(source=source, at_ms=at_ms, data={**raw, "timestamp": at_ms})


def _message_kind(text: str | None, attachments: list[dict[str, Any]], unsupported: bool, story: bool) -> str:
    if unsupported:
        return "unsupported"
    if attachments:
        type_ = str(attachments[0]["type"])
        return _KIND_ALIASES.get(type_, type_)[:_KIND_MAX]
    if story and text is not None:
        return "story_reply"
    if text is not None:
        return "text"
    return "unsupported"


def _message(message: dict[str, Any], ctx: ItemContext, echo: bool) -> NewMessage | Delete:
    mid = _str(message.get("mid"))
    if mid is None:
        raise InvalidMetaItem("message without mid")
    if _truthy(message.get("is_deleted")):
        return Delete(mid=mid)
    text = message.get("text") if isinstance(message.get("text"), str) else None
    raw_attachments = message.get("attachments")
    attachments = (
        [_attachment(a) for a in raw_attachments if isinstance(a, dict)] if isinstance(raw_attachments, list) else []
    )
    quick_reply = message.get("quick_reply")
    reply_to = _obj(message.get("reply_to"))
    story = reply_to.get("story") if isinstance(reply_to.get("story"), dict) else None
    return NewMessage(
        mid=mid,
        direction="out" if echo else "in",
        kind=_message_kind(text, attachments, _truthy(message.get("is_unsupported")), story is not None),
        text=text,
        attachments=attachments,
        quick_reply_payload=_str(quick_reply.get("payload")) if isinstance(quick_reply, dict) else None,
        reply_to_mid=_str(reply_to.get("mid")),
        reply_to_story=dict(story) if story is not None else None,
        app_id=_str(message.get("app_id")),
        author_label=ECHO_AUTHOR if echo else None,
        referral=None if echo else _referral(message.get("referral"), ctx.at_ms),
    )


def parse_item(data: MetaItemData, fallback_ms: int) -> ParsedItem | Ignored:
    """Read one ingest event. Raises :class:`InvalidMetaItem` when it cannot be Meta's.

    ``fallback_ms`` is used when neither the item nor its entry carries a time.
    """
    if data.kind == "other":
        return Ignored("not a messaging change the CRM tracks")
    item = _storable(data.item)
    echo = data.kind == "echo"
    page_id = _meta_id(data.entry_id, "entry.id")
    party = _obj(item.get("recipient" if echo else "sender"))
    if "id" not in party and _str(party.get("user_ref")):
        # The Chat plugin's and checkbox plugin's people: no PSID yet, no contact to file it under.
        return Ignored("a person known only by a plugin's user_ref")
    customer = _meta_id(data.recipient_id if echo else data.sender_id, "recipient.id" if echo else "sender.id")
    if customer == page_id:
        return Ignored("an item about the page itself")
    at_ms = _ms(data.timestamp if data.timestamp is not None else loose_int(item.get("timestamp")))
    if at_ms is None:
        at_ms = _ms(data.entry_time)
    if at_ms is None:
        at_ms = fallback_ms
    ctx = ItemContext(
        platform="messenger" if data.object == "page" else "instagram",
        page_id=page_id,
        customer_id=customer,
        at_ms=at_ms,
        dedupe_key=data.dedupe_key,
    )
    change: Change
    if data.kind in ("message", "echo"):
        message = item.get("message")
        if not isinstance(message, dict):
            raise InvalidMetaItem("message item without a message object")
        change = _message(message, ctx, echo)
    elif data.kind == "postback":
        postback = item.get("postback")
        if not isinstance(postback, dict):
            raise InvalidMetaItem("postback item without a postback object")
        # Older postbacks carry no mid; the item's own identity then stands in for it.
        mid = _str(postback.get("mid")) or f"postback:{page_id}:{customer}:{at_ms}"
        title = _str(postback.get("title"))
        change = NewMessage(
            mid=mid,
            direction="in",
            kind="postback",
            text=title,
            postback_payload=_str(postback.get("payload")),
            referral=_referral(postback.get("referral"), at_ms),
        )
    elif data.kind == "referral":
        referral = _referral(item.get("referral"), at_ms)
        if referral is None:
            raise InvalidMetaItem("referral item without a referral object")
        change = ReferralOnly(referral)
    elif data.kind == "reaction":
        body = _obj(item.get("reaction"))
        target = _str(body.get("mid"))
        if target is None:
            raise InvalidMetaItem("reaction without mid")
        change = Reaction(
            mid=target,
            reactor=customer,
            action="unreact" if body.get("action") == "unreact" else "react",
            reaction=_str(body.get("reaction")),
            emoji=_str(body.get("emoji")),
        )
    elif data.kind == "edit":
        body = _obj(item.get("message_edit"))
        target = _str(body.get("mid"))
        if target is None:
            raise InvalidMetaItem("message_edit without mid")
        text = body.get("text") if isinstance(body.get("text"), str) else None
        change = Edit(mid=target, text=text, num_edit=max(loose_int(body.get("num_edit")) or 1, 1))
    elif data.kind == "read":
        body = _obj(item.get("read"))
        watermark, target = loose_int(body.get("watermark")), _str(body.get("mid"))
        if watermark is None and target is None:
            raise InvalidMetaItem("read without watermark or mid")
        change = Read(watermark_ms=watermark, mid=target)
    elif data.kind == "delivery":
        body = _obj(item.get("delivery"))
        raw_mids = body["mids"] if isinstance(body.get("mids"), list) else []
        mids = tuple(dict.fromkeys(m for m in (_str(x) for x in raw_mids) if m))
        watermark = loose_int(body.get("watermark"))
        if not mids and watermark is None:
            raise InvalidMetaItem("delivery without mids or watermark")
        change = Delivery(mids=mids, watermark_ms=watermark)
    else:  # pragma: no cover - MetaKind is closed
        return Ignored(f"unknown kind {data.kind}")
    return ParsedItem(ctx, change)

"""Meta webhook bodies for Messenger and Instagram, built the way Meta sends them.

Everything here is pure: no clock, no network, no global randomness. Identifiers
(PSIDs, IGSIDs, message ids, CDN URLs) come from a caller-supplied
:class:`random.Random`, and timestamps from a simulated clock, so the same seed
gives byte-identical bodies.

Wire format (see ``docs/protocols.md``, "Meta webhooks")::

    {"object": "page" | "instagram",
     "entry": [{"id": <page or IG account id>, "time": <ms>,
                "messaging": [<item>, ...]}]}        # or "standby": [...]

Each item has ``sender.id``, ``recipient.id``, ``timestamp`` (ms) and exactly one
payload key (``message``, ``postback``, ``reaction``, ``read``, ``delivery``,
``message_edit``, ``referral``, ``optin``, ``pass_thread_control``...). The one
exception is the newer postback notification, which Meta documents as a
``{"field": "messaging_postbacks", "value": {...}}`` object; it is emitted as a
``messaging[]`` item of that shape (see :meth:`Customer.postback_value`).

Bodies are serialised like Meta does (compact separators, non-ASCII escaped as
``\\uXXXX``) and signed with ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256>``
over the exact bytes sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

__all__ = [
    "DEFAULT_APP_ID",
    "DEFAULT_INSTAGRAM_ACCOUNT_ID",
    "DEFAULT_PAGE_ID",
    "DEFAULT_START_MS",
    "KINDS",
    "PLATFORMS",
    "VARIANTS",
    "Customer",
    "JSONObject",
    "Kind",
    "MetaObject",
    "Platform",
    "SignedWebhook",
    "Variant",
    "encode",
    "entry",
    "envelope",
    "every_kind",
    "every_variant",
    "kinds_for",
    "object_for",
    "platform_for",
    "sign",
    "signed",
    "variants_for",
    "webhook",
]

Platform = Literal["messenger", "instagram"]
"""A messaging channel of the CRM."""

MetaObject = Literal["page", "instagram"]
"""The ``object`` field of a webhook body: ``page`` for Messenger, ``instagram``."""

Kind = Literal["message", "echo", "postback", "reaction", "read", "delivery", "edit", "referral", "other"]
"""The kinds ingest sorts ``messaging[]`` items into (``ingest.meta.<object>.<kind>``)."""

JSONObject = dict[str, Any]
"""A JSON object as built here (string keys, JSON-serialisable values)."""

PLATFORMS: Final[tuple[Platform, ...]] = get_args(Platform)
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)

# 2026-01-01T00:00:00Z: the default start of the simulated clock.
DEFAULT_START_MS: Final = 1_767_225_600_000
DEFAULT_PAGE_ID: Final = "104857600123456"
DEFAULT_INSTAGRAM_ACCOUNT_ID: Final = "17841400123456789"
# Meta sends app_id as a JSON number in echoes.
DEFAULT_APP_ID: Final = 734512098765432

_OBJECTS: Final[dict[Platform, MetaObject]] = {"messenger": "page", "instagram": "instagram"}
_B64URL: Final = string.ascii_letters + string.digits + "-_"
# How many message ids a customer remembers per side, so long simulations stay small.
_HISTORY: Final = 64


# --------------------------------------------------------------------------- wire


def sign(body: bytes, app_secret: str) -> str:
    """Return the ``X-Hub-Signature-256`` value for ``body``.

    ``"sha256="`` followed by the lowercase hex HMAC-SHA256 of the raw body bytes,
    keyed with the app secret (UTF-8).
    """
    digest = hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return "sha256=" + digest


def encode(payload: Mapping[str, Any]) -> bytes:
    """Serialise ``payload`` the way Meta does.

    Compact separators (``,`` and ``:``, no spaces) and every non-ASCII character
    escaped as ``\\uXXXX`` (astral characters as surrogate pairs), so the body is
    pure ASCII.
    """
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(frozen=True, slots=True)
class SignedWebhook:
    """A webhook POST ready to send: the exact body bytes and the headers Meta sets."""

    body: bytes
    headers: dict[str, str]


def signed(payload: Mapping[str, Any], app_secret: str) -> SignedWebhook:
    """Encode ``payload`` and sign it with ``app_secret``."""
    body = encode(payload)
    return SignedWebhook(
        body=body,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(body, app_secret),
        },
    )


def object_for(platform: Platform) -> MetaObject:
    """The webhook ``object`` Meta uses for ``platform``."""
    return _OBJECTS[platform]


def platform_for(object_: MetaObject) -> Platform:
    """The platform whose webhooks carry ``object_``."""
    return "messenger" if object_ == "page" else "instagram"


def envelope(object_: MetaObject, entries: list[JSONObject]) -> JSONObject:
    """A whole webhook body: ``{"object": object_, "entry": entries}``."""
    return {"object": object_, "entry": entries}


def entry(page_id: str, items: list[JSONObject], time_ms: int, standby: bool = False) -> JSONObject:
    """One ``entry[]`` element for a page (or Instagram account).

    Items go under ``messaging`` or, for handover-protocol standby events, under
    ``standby``; the item shapes are the same in both.
    """
    return {"id": page_id, "time": time_ms, ("standby" if standby else "messaging"): items}


def webhook(
    platform: Platform,
    page_id: str,
    items: list[JSONObject],
    time_ms: int,
    standby: bool = False,
) -> JSONObject:
    """A body with a single entry holding ``items`` for ``page_id`` on ``platform``."""
    return envelope(object_for(platform), [entry(page_id, items, time_ms, standby)])


# ---------------------------------------------------------------------- customers

_TEXTS: Final[tuple[str, ...]] = (
    "Hi! How much is it?",
    "Здравствуйте! Сколько стоит доставка в Киев?",
    "Доброго дня, чи є в наявності розмір M?",
    "Is this still available? 😊",
    "Can you ship to Kraków by Friday?",
    "Ich hätte gern zwei Stück, geht das?",
    "Thanks, I'll think about it 🙏",
    "what colours do you have",
    "Можно оплатить картой при получении?",
    "OK, let's do it. Where do I pay? 💳",
)
_QUICK_REPLIES: Final[tuple[tuple[str, str], ...]] = (
    ("Price", "ASK_PRICE"),
    ("Delivery", "ASK_DELIVERY"),
    ("Talk to a manager", "HUMAN_AGENT"),
)
_POSTBACKS: Final[tuple[tuple[str, str], ...]] = (
    ("View catalogue", "CATALOGUE"),
    ("Book a call", "BOOK_CALL"),
    ("Special offer", "PROMO_SPRING"),
)
_REACTIONS: Final[tuple[tuple[str, str], ...]] = (
    ("love", "\u2764\ufe0f"),
    ("like", "\U0001f44d"),
    ("laugh", "\U0001f606"),
    ("wow", "\U0001f62e"),
)
_EXTENSIONS: Final[dict[str, str]] = {
    "image": "jpg",
    "video": "mp4",
    "audio": "mp4",
    "file": "pdf",
}


def _digits(rng: random.Random, n: int) -> str:
    """An ``n``-digit decimal string with no leading zero."""
    return str(rng.randrange(10 ** (n - 1), 10**n))


def _token(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_B64URL) for _ in range(n))


@dataclass
class Customer:
    """A customer chatting with one page (Messenger) or professional account (Instagram).

    Each method returns one ``messaging[]`` item and advances the simulated clock
    (or sets it, when ``timestamp_ms`` is given). The customer remembers its own
    message ids and the page's, so reactions, replies, edits, deletes, reads and
    deliveries point at messages that exist in the conversation.
    """

    platform: Platform
    user_id: str
    page_id: str
    rng: random.Random
    clock_ms: int = DEFAULT_START_MS
    app_id: int = DEFAULT_APP_ID
    own_mids: list[str] = field(default_factory=list)
    page_mids: list[str] = field(default_factory=list)
    edits: dict[str, int] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)

    @classmethod
    def new(
        cls,
        platform: Platform,
        rng: random.Random,
        page_id: str | None = None,
        clock_ms: int = DEFAULT_START_MS,
    ) -> Customer:
        """A customer with a fresh PSID/IGSID drawn from ``rng``."""
        if page_id is None:
            page_id = DEFAULT_PAGE_ID if platform == "messenger" else DEFAULT_INSTAGRAM_ACCOUNT_ID
        return cls(
            platform=platform,
            user_id=_digits(rng, 16 if platform == "messenger" else 17),
            page_id=page_id,
            rng=rng,
            clock_ms=clock_ms,
        )

    # ------------------------------------------------------------------ helpers

    @property
    def object(self) -> MetaObject:
        """The webhook ``object`` for this customer's platform."""
        return object_for(self.platform)

    def _tick(self, timestamp_ms: int | None) -> int:
        if timestamp_ms is not None:
            self.clock_ms = timestamp_ms
        else:
            self.clock_ms += self.rng.randint(300, 5_000)
        return self.clock_ms

    def new_mid(self) -> str:
        """A fresh message id in the platform's style.

        Messenger: ``m_`` and 86 base64url characters. Instagram: unpadded base64 of
        an ``ig_message_item:...`` descriptor, hence the ``aWdf`` prefix.
        """
        if self.platform == "messenger":
            return "m_" + _token(self.rng, 86)
        raw = f"ig_message_item:1:IGMessageData:{self.page_id}:{_digits(self.rng, 38)}"
        return base64.b64encode(raw.encode("ascii")).decode("ascii").rstrip("=")

    def _cdn_url(self, ext: str) -> str:
        if self.platform == "instagram":
            return (
                "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id="
                f"{_digits(self.rng, 17)}&signature={_token(self.rng, 43)}"
            )
        return (
            f"https://scontent.xx.fbcdn.net/v/t1.15752-9/{_digits(self.rng, 9)}_"
            f"{_digits(self.rng, 15)}_n.{ext}?_nc_cat=1&oh={_token(self.rng, 32)}"
        )

    def _own_mid(self) -> str:
        return self.own_mids[-1] if self.own_mids else self.new_mid()

    def _undeleted_mid(self) -> str:
        for mid in reversed(self.own_mids):
            if mid not in self.deleted:
                return mid
        return self.new_mid()

    def _page_mid(self) -> str:
        if not self.page_mids:
            self._remember(self.page_mids, self.new_mid())
        return self.page_mids[-1]

    def _remember(self, mids: list[str], mid: str) -> None:
        mids.append(mid)
        if len(mids) > _HISTORY:
            del mids[:-_HISTORY]
            known = set(self.own_mids)
            self.edits = {m: n for m, n in self.edits.items() if m in known}
            self.deleted &= known

    def _from_customer(self, timestamp_ms: int | None) -> JSONObject:
        return {
            "sender": {"id": self.user_id},
            "recipient": {"id": self.page_id},
            "timestamp": self._tick(timestamp_ms),
        }

    def _message(self, body: JSONObject, timestamp_ms: int | None) -> JSONObject:
        item = self._from_customer(timestamp_ms)
        mid = self.new_mid()
        self._remember(self.own_mids, mid)
        item["message"] = {"mid": mid, **body}
        return item

    # ----------------------------------------------------------------- messages

    def text(self, text: str | None = None, *, timestamp_ms: int | None = None) -> JSONObject:
        """A text message (``message.text``)."""
        return self._message({"text": text or self.rng.choice(_TEXTS)}, timestamp_ms)

    def attachment(self, type_: str, *, timestamp_ms: int | None = None) -> JSONObject:
        """A message with one attachment of ``type_``.

        Media types (image, video, audio, file), ``share``, ``story_mention`` and
        ``ephemeral`` carry ``payload.url``; ``ig_reel`` adds ``reel_video_id`` and
        ``title``; ``location`` carries ``payload.coordinates``; ``fallback`` a
        shared link's ``url`` and ``title``; ``template`` a product element.
        """
        payload: JSONObject
        if type_ == "location":
            payload = {
                "coordinates": {
                    "lat": round(self.rng.uniform(44.0, 52.0), 6),
                    "long": round(self.rng.uniform(22.0, 40.0), 6),
                }
            }
        elif type_ == "fallback":
            payload = {
                "url": f"https://shop.example.com/p/{_digits(self.rng, 6)}",
                "title": "Linen shirt, sand — Shop",
            }
        elif type_ == "template":
            payload = {
                "product": {
                    "elements": [
                        {
                            "id": _digits(self.rng, 16),
                            "retailer_id": f"SKU-{_digits(self.rng, 5)}",
                            "image_url": self._cdn_url("jpg"),
                            "title": "Linen shirt",
                            "subtitle": "UAH 1 450",
                        }
                    ]
                }
            }
        elif type_ == "ig_reel":
            payload = {
                "reel_video_id": _digits(self.rng, 17),
                "title": "New spring collection ✨",
                "url": self._cdn_url("mp4"),
            }
        else:
            payload = {"url": self._cdn_url(_EXTENSIONS.get(type_, "jpg"))}
        return self._message({"attachments": [{"type": type_, "payload": payload}]}, timestamp_ms)

    def fallback_without_payload(self, *, timestamp_ms: int | None = None) -> JSONObject:
        """A ``fallback`` attachment with no payload (an unsupported share on Messenger)."""
        return self._message({"attachments": [{"type": "fallback"}]}, timestamp_ms)

    def story_mention(self, *, timestamp_ms: int | None = None) -> JSONObject:
        """Instagram: the customer mentioned the business in their story."""
        return self.attachment("story_mention", timestamp_ms=timestamp_ms)

    def unsupported(self, *, timestamp_ms: int | None = None) -> JSONObject:
        """A message Meta cannot describe: ``message.is_unsupported: true``, no content."""
        return self._message({"is_unsupported": True}, timestamp_ms)

    def quick_reply(
        self, title: str | None = None, payload: str | None = None, *, timestamp_ms: int | None = None
    ) -> JSONObject:
        """A tap on a quick reply: ``message.text`` plus ``message.quick_reply.payload``."""
        if title is None or payload is None:
            title, payload = self.rng.choice(_QUICK_REPLIES)
        return self._message({"text": title, "quick_reply": {"payload": payload}}, timestamp_ms)

    def reply(self, mid: str | None = None, text: str | None = None, *, timestamp_ms: int | None = None) -> JSONObject:
        """A reply to a message of the conversation (by default the page's last one).

        ``message.reply_to.mid``; Messenger also sends ``reply_to.is_self_reply``.
        """
        target = mid or self._page_mid()
        reply_to: JSONObject = {"mid": target}
        if self.platform == "messenger":
            reply_to["is_self_reply"] = target in self.own_mids
        return self._message({"text": text or self.rng.choice(_TEXTS), "reply_to": reply_to}, timestamp_ms)

    def story_reply(self, text: str | None = None, *, timestamp_ms: int | None = None) -> JSONObject:
        """Instagram: a reply to the business's story, ``message.reply_to.story {url, id}``."""
        story = {"url": self._cdn_url("jpg"), "id": _digits(self.rng, 17)}
        return self._message({"text": text or self.rng.choice(_TEXTS), "reply_to": {"story": story}}, timestamp_ms)

    def delete(self, mid: str | None = None, *, as_string: bool = False, timestamp_ms: int | None = None) -> JSONObject:
        """Instagram: the customer unsent a message, ``message.is_deleted``.

        ``message.mid`` is the id of the unsent message (by default the customer's
        latest one not yet unsent), so it equals the mid of an earlier item.

        With ``as_string`` the flag is the string ``"true"``, as Meta sometimes sends it.
        """
        target = mid or self._undeleted_mid()
        self.deleted.add(target)
        item = self._from_customer(timestamp_ms)
        item["message"] = {"mid": target, "is_deleted": "true" if as_string else True}
        return item

    def echo(self, text: str | None = None, *, timestamp_ms: int | None = None) -> JSONObject:
        """A message the page sent (e.g. from the Page inbox), echoed back.

        Sender and recipient are swapped (sender = page); ``message.is_echo`` is
        true and ``message.app_id`` names the sending app.
        """
        mid = self.new_mid()
        self._remember(self.page_mids, mid)
        return {
            "sender": {"id": self.page_id},
            "recipient": {"id": self.user_id},
            "timestamp": self._tick(timestamp_ms),
            "message": {
                "mid": mid,
                "is_echo": True,
                "app_id": self.app_id,
                "text": text or "Hello! Yes, it is available. Which size do you need?",
            },
        }

    # ---------------------------------------------------------------- postbacks

    def postback(
        self, title: str | None = None, payload: str | None = None, *, timestamp_ms: int | None = None
    ) -> JSONObject:
        """A tap on a postback button, in the usual ``messaging[]`` shape.

        ``{"sender", "recipient", "timestamp", "postback": {"title", "payload", "mid"}}``.
        """
        if title is None or payload is None:
            title, payload = self.rng.choice(_POSTBACKS)
        item = self._from_customer(timestamp_ms)
        item["postback"] = {"title": title, "payload": payload, "mid": self.new_mid()}
        return item

    def get_started(self, *, ref: str | None = None, timestamp_ms: int | None = None) -> JSONObject:
        """Messenger's "Get Started" button, often the first event of a conversation.

        With ``ref`` (an m.me link with ``?ref=``) the postback carries
        ``postback.referral {ref, source: "SHORTLINK", type: "OPEN_THREAD"}``.
        """
        item = self.postback("Get Started", "GET_STARTED", timestamp_ms=timestamp_ms)
        if ref is not None:
            item["postback"]["referral"] = {"ref": ref, "source": "SHORTLINK", "type": "OPEN_THREAD"}
        return item

    def icebreaker(self, *, timestamp_ms: int | None = None) -> JSONObject:
        """Instagram: a tap on an ice breaker question (a postback)."""
        return self.postback("What are your prices?", "ICEBREAKER_PRICES", timestamp_ms=timestamp_ms)

    def postback_value(
        self, title: str | None = None, payload: str | None = None, *, timestamp_ms: int | None = None
    ) -> JSONObject:
        """A postback in the newer ``field``/``value`` shape, as a ``messaging[]`` item.

        Meta documents this notification as::

            {"field": "messaging_postbacks",
             "value": {"sender": {"id": PSID}, "recipient": {"id": PAGE_ID},
                       "timestamp": "<ms as a string>",
                       "postback": {"mid", "title", "payload"}}}

        The reference says every property in it is a string, so ``timestamp`` is a
        string here (milliseconds), unlike the usual shape's number. Ingest unwraps
        ``value`` and treats it as a usual postback item.
        """
        inner = self.postback(title, payload, timestamp_ms=timestamp_ms)
        inner["timestamp"] = str(inner["timestamp"])
        inner["postback"] = {
            "mid": inner["postback"]["mid"],
            "title": inner["postback"]["title"],
            "payload": inner["postback"]["payload"],
        }
        return {"field": "messaging_postbacks", "value": inner}

    # ---------------------------------------------------------------- referrals

    def referral(
        self,
        source: Literal["ADS", "SHORTLINK"] = "SHORTLINK",
        ref: str | None = None,
        *,
        timestamp_ms: int | None = None,
    ) -> JSONObject:
        """The customer entered an existing conversation from an ad or an m.me/ig.me link.

        ``{"referral": {"ref", "source", "type": "OPEN_THREAD"}}``; ads add ``ad_id``
        and ``ads_context_data``.
        """
        item = self._from_customer(timestamp_ms)
        referral: JSONObject = {
            "ref": ref or f"campaign_{_digits(self.rng, 4)}",
            "source": source,
            "type": "OPEN_THREAD",
        }
        if source == "ADS":
            referral["ad_id"] = _digits(self.rng, 17)
            referral["ads_context_data"] = {
                "ad_title": "Spring sale −20%",
                "photo_url": self._cdn_url("jpg"),
                "post_id": f"{self.page_id}_{_digits(self.rng, 16)}",
            }
        item["referral"] = referral
        return item

    # ------------------------------------------------------------ receipts etc.

    def reaction(
        self,
        action: Literal["react", "unreact"] = "react",
        mid: str | None = None,
        *,
        timestamp_ms: int | None = None,
    ) -> JSONObject:
        """A reaction to a message (by default the page's last one).

        ``{"reaction": {"mid", "action", "reaction", "emoji"}}``; an Instagram
        ``unreact`` carries only ``mid`` and ``action``.
        """
        item = self._from_customer(timestamp_ms)
        name, emoji = self.rng.choice(_REACTIONS)
        body: JSONObject = {"mid": mid or self._page_mid(), "action": action}
        if action == "react" or self.platform == "messenger":
            body["reaction"] = name
            body["emoji"] = emoji
        item["reaction"] = body
        return item

    def read(self, *, timestamp_ms: int | None = None) -> JSONObject:
        """The customer read the page's messages.

        Messenger: ``{"read": {"watermark": <ms>}}``. Instagram (``messaging_seen``):
        ``{"read": {"mid": <the page's last mid>}}``.
        """
        item = self._from_customer(timestamp_ms)
        if self.platform == "messenger":
            item["read"] = {"watermark": item["timestamp"] - self.rng.randint(1, 2_000)}
        else:
            item["read"] = {"mid": self._page_mid()}
        return item

    def delivery(self, *, with_mids: bool = True, timestamp_ms: int | None = None) -> JSONObject:
        """Messenger: the page's messages reached the customer's device.

        ``{"delivery": {"mids": [...], "watermark": <ms>}}``; ``mids`` may be absent.
        """
        item = self._from_customer(timestamp_ms)
        delivery: JSONObject = {}
        if with_mids:
            self._page_mid()
            delivery["mids"] = list(self.page_mids[-2:])
        delivery["watermark"] = item["timestamp"] - self.rng.randint(1, 2_000)
        item["delivery"] = delivery
        return item

    def edit(self, mid: str | None = None, text: str | None = None, *, timestamp_ms: int | None = None) -> JSONObject:
        """Messenger: the customer edited a message, ``{"message_edit": {"mid", "text", "num_edit"}}``."""
        target = mid or self._own_mid()
        self.edits[target] = self.edits.get(target, 0) + 1
        item = self._from_customer(timestamp_ms)
        item["message_edit"] = {
            "mid": target,
            "text": text or self.rng.choice(_TEXTS),
            "num_edit": self.edits[target],
        }
        return item

    def optin(self, ref: str | None = None, *, timestamp_ms: int | None = None) -> JSONObject:
        """Messenger: a "Send to Messenger" plugin opt-in, ``{"optin": {"ref"}}``."""
        item = self._from_customer(timestamp_ms)
        item["optin"] = {"ref": ref or "SITE_PRODUCT_PAGE"}
        return item

    def pass_thread_control(self, *, timestamp_ms: int | None = None) -> JSONObject:
        """Handover protocol: another app passed the conversation to ours.

        ``{"pass_thread_control": {"new_owner_app_id", "previous_owner_app_id", "metadata"}}``.
        """
        item = self._from_customer(timestamp_ms)
        item["pass_thread_control"] = {
            "new_owner_app_id": str(self.app_id),
            "previous_owner_app_id": _digits(self.rng, 15),
            "metadata": "bot handed over to sales",
        }
        return item

    # ----------------------------------------------------------------- variants

    def make(self, variant: str, *, timestamp_ms: int | None = None) -> tuple[Kind, JSONObject]:
        """Build the named variant (see :data:`VARIANTS`): ``(ingest kind, item)``.

        Raises ``ValueError`` for an unknown name or one this platform does not send.
        """
        spec = VARIANTS.get(variant)
        if spec is None:
            raise ValueError(f"unknown variant {variant!r}")
        if self.platform not in spec.platforms:
            raise ValueError(f"{self.platform} does not send {variant!r}")
        return spec.kind, spec.build(self, timestamp_ms)


# ------------------------------------------------------------------- catalogue

_Builder = Callable[[Customer, int | None], JSONObject]
_BOTH: Final[frozenset[Platform]] = frozenset(PLATFORMS)
_MESSENGER: Final[frozenset[Platform]] = frozenset({"messenger"})
_INSTAGRAM: Final[frozenset[Platform]] = frozenset({"instagram"})


@dataclass(frozen=True, slots=True)
class Variant:
    """One kind of ``messaging[]`` item a platform sends, and ingest's kind for it."""

    name: str
    kind: Kind
    platforms: frozenset[Platform]
    build: _Builder
    description: str


def _attachment(type_: str) -> _Builder:
    return lambda c, t: c.attachment(type_, timestamp_ms=t)


# Ordered like a conversation, so replies, reactions, reads and edits refer to
# messages that were sent earlier.
_CATALOGUE: Final[tuple[Variant, ...]] = (
    Variant(
        "get_started", "postback", _MESSENGER, lambda c, t: c.get_started(timestamp_ms=t), '"Get Started" postback'
    ),
    Variant(
        "get_started_referral",
        "postback",
        _MESSENGER,
        lambda c, t: c.get_started(ref="spring_landing", timestamp_ms=t),
        '"Get Started" postback from an m.me link (postback.referral)',
    ),
    Variant("text", "message", _BOTH, lambda c, t: c.text(timestamp_ms=t), "text message"),
    Variant("image", "message", _BOTH, _attachment("image"), "image attachment"),
    Variant("video", "message", _BOTH, _attachment("video"), "video attachment"),
    Variant("audio", "message", _BOTH, _attachment("audio"), "audio (voice) attachment"),
    Variant("file", "message", _BOTH, _attachment("file"), "file attachment"),
    Variant("location", "message", _MESSENGER, _attachment("location"), "location attachment"),
    Variant("fallback", "message", _MESSENGER, _attachment("fallback"), "shared link (fallback)"),
    Variant(
        "fallback_empty",
        "message",
        _MESSENGER,
        lambda c, t: c.fallback_without_payload(timestamp_ms=t),
        "fallback without payload",
    ),
    Variant("template", "message", _MESSENGER, _attachment("template"), "product template"),
    Variant("share", "message", _INSTAGRAM, _attachment("share"), "shared post"),
    Variant("ig_reel", "message", _BOTH, _attachment("ig_reel"), "shared Instagram reel"),
    Variant("story_mention", "message", _INSTAGRAM, lambda c, t: c.story_mention(timestamp_ms=t), "story mention"),
    Variant("ephemeral", "message", _INSTAGRAM, _attachment("ephemeral"), "view-once media"),
    Variant("unsupported", "message", _INSTAGRAM, lambda c, t: c.unsupported(timestamp_ms=t), "message.is_unsupported"),
    Variant("echo", "echo", _BOTH, lambda c, t: c.echo(timestamp_ms=t), "the page's own message echoed back"),
    Variant("quick_reply", "message", _BOTH, lambda c, t: c.quick_reply(timestamp_ms=t), "quick reply tap"),
    Variant("reply", "message", _BOTH, lambda c, t: c.reply(timestamp_ms=t), "reply to a message (reply_to.mid)"),
    Variant(
        "story_reply",
        "message",
        _INSTAGRAM,
        lambda c, t: c.story_reply(timestamp_ms=t),
        "reply to a story (reply_to.story)",
    ),
    Variant("postback", "postback", _BOTH, lambda c, t: c.postback(timestamp_ms=t), "postback button"),
    Variant(
        "postback_value",
        "postback",
        _BOTH,
        lambda c, t: c.postback_value(timestamp_ms=t),
        "postback in the field/value shape",
    ),
    Variant(
        "icebreaker", "postback", _INSTAGRAM, lambda c, t: c.icebreaker(timestamp_ms=t), "ice breaker tap (postback)"
    ),
    Variant("referral_ad", "referral", _BOTH, lambda c, t: c.referral("ADS", timestamp_ms=t), "referral from an ad"),
    Variant(
        "referral_link", "referral", _BOTH, lambda c, t: c.referral("SHORTLINK", timestamp_ms=t), "referral from a link"
    ),
    Variant("reaction", "reaction", _BOTH, lambda c, t: c.reaction("react", timestamp_ms=t), "reaction"),
    Variant("unreact", "reaction", _BOTH, lambda c, t: c.reaction("unreact", timestamp_ms=t), "reaction removed"),
    Variant("read", "read", _BOTH, lambda c, t: c.read(timestamp_ms=t), "read receipt (watermark / mid)"),
    Variant("delivery", "delivery", _MESSENGER, lambda c, t: c.delivery(timestamp_ms=t), "delivery receipt with mids"),
    Variant(
        "delivery_no_mids",
        "delivery",
        _MESSENGER,
        lambda c, t: c.delivery(with_mids=False, timestamp_ms=t),
        "delivery receipt, watermark only",
    ),
    Variant("edit", "edit", _MESSENGER, lambda c, t: c.edit(timestamp_ms=t), "message_edit"),
    Variant(
        "delete", "message", _INSTAGRAM, lambda c, t: c.delete(timestamp_ms=t), "unsent message (is_deleted: true)"
    ),
    Variant(
        "delete_string",
        "message",
        _INSTAGRAM,
        lambda c, t: c.delete(as_string=True, timestamp_ms=t),
        'unsent message (is_deleted: "true")',
    ),
    Variant("optin", "other", _MESSENGER, lambda c, t: c.optin(timestamp_ms=t), "plugin opt-in"),
    Variant(
        "handover",
        "other",
        _BOTH,
        lambda c, t: c.pass_thread_control(timestamp_ms=t),
        "pass_thread_control (handover protocol)",
    ),
)

VARIANTS: Final[Mapping[str, Variant]] = {v.name: v for v in _CATALOGUE}
"""Every item variant by name, in conversational order."""


def variants_for(platform: Platform) -> tuple[str, ...]:
    """Names of the variants ``platform`` sends, in conversational order."""
    return tuple(v.name for v in _CATALOGUE if platform in v.platforms)


def kinds_for(platform: Platform) -> frozenset[Kind]:
    """The ingest kinds ``platform`` produces (Instagram sends no delivery or edit)."""
    return frozenset(v.kind for v in _CATALOGUE if platform in v.platforms)


def every_variant(
    platform: Platform,
    *,
    seed: int = 0,
    page_id: str | None = None,
    start_ms: int = DEFAULT_START_MS,
    names: Sequence[str] | None = None,
) -> list[tuple[str, Kind, JSONObject]]:
    """One item of every variant ``platform`` sends, from a single customer.

    Returns ``(variant name, ingest kind, item)`` triples; the same arguments give
    the same items.
    """
    customer = Customer.new(platform, random.Random(seed), page_id=page_id, clock_ms=start_ms)
    out: list[tuple[str, Kind, JSONObject]] = []
    for name in names if names is not None else variants_for(platform):
        kind, item = customer.make(name)
        out.append((name, kind, item))
    return out


def every_kind(
    platform: Platform,
    *,
    seed: int = 0,
    page_id: str | None = None,
    start_ms: int = DEFAULT_START_MS,
) -> list[tuple[Kind, JSONObject]]:
    """``(expected ingest kind, item)`` for every variant ``platform`` sends.

    Covers all nine kinds for Messenger and all but ``delivery`` and ``edit`` for
    Instagram. Items go under ``entry[].messaging[]`` or, unchanged, under
    ``entry[].standby[]`` (see :func:`entry`).
    """
    return [(kind, item) for _, kind, item in every_variant(platform, seed=seed, page_id=page_id, start_ms=start_ms)]

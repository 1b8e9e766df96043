"""The example payloads of Meta's Messenger Platform and Instagram Platform webhook
references, one :class:`DocumentedShape` each, with what the system does with it.

Each example keeps the documented shape and values (timestamps, string numbers,
``user_ref`` senders, the ``field``/``value`` wrapper, a delivery without a timestamp,
a top-level array...); only the placeholders become ids: ``<PAGE_ID>`` / ``<IGID>``
the page or Instagram account, ``<PSID>`` / ``<IGSID>`` the customer, ``<MID>``,
``<MID_2>`` fresh message ids, so every test run and every shape has ids of its own.
An item example is delivered the way Meta delivers it: in ``entry[].messaging[]``
(``standby[]`` for the handover examples, ``changes[]`` for a ``field``/``value`` one).

``events`` is how many events ingest publishes for the body; ``crm`` says whether crm
stores it (a message, a receipt, a reaction, a referral...) or deliberately ignores it
(opt-ins, handover notices, comments...). Neither ever refuses a documented shape.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from .meta_webhooks import JSONObject, MetaObject

__all__ = ["DOCUMENTED_SHAPES", "DocumentedShape", "Filled"]

_MESSENGER = (
    "https://developers.facebook.com/documentation/business-messaging/messenger-platform/webhooks/webhook-events/"
)
_INSTAGRAM = "https://developers.facebook.com/documentation/business-messaging/instagram-messaging/webhooks"
_INSTAGRAM_EXAMPLES = "https://developers.facebook.com/documentation/instagram-platform/webhooks/examples"

Where = Literal["messaging", "standby", "changes", "entry", "body"]


@dataclass(frozen=True)
class Filled:
    """A documented example with ids of its own: the body to POST and the ids in it."""

    body: Any
    page_id: str
    customer_id: str
    mids: tuple[str, ...]


@dataclass(frozen=True)
class DocumentedShape:
    """One example of Meta's webhook reference."""

    name: str
    source: str
    object: MetaObject
    example: Any
    """The example as documented (an item, unless ``where`` is ``entry`` or ``body``)."""
    crm: Literal["stored", "ignored"]
    where: Where = "messaging"
    events: int = 1

    def fill(self, page_id: str | None = None, customer_id: str | None = None) -> Filled:
        """The whole webhook body, placeholders replaced by fresh ids."""
        page = page_id or str(10**14 + secrets.randbelow(9 * 10**14))
        customer = customer_id or str(10**15 + secrets.randbelow(9 * 10**15))
        mids = (f"m_{secrets.token_urlsafe(24)}", f"m_{secrets.token_urlsafe(24)}")
        names = {
            "<PAGE_ID>": page,
            "<IGID>": page,
            "<PSID>": customer,
            "<IGSID>": customer,
            "<MID>": mids[0],
            "<MID_2>": mids[1],
        }
        example = _replace(copy.deepcopy(self.example), names)
        if self.where == "body":
            body = example
        elif self.where == "entry":
            body = {"object": self.object, "entry": [example]}
        else:
            body = {"object": self.object, "entry": [{"id": page, "time": 1458692752478, self.where: [example]}]}
        return Filled(body=body, page_id=page, customer_id=customer, mids=mids)


def _replace(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, dict):
        return {key: _replace(item, names) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace(item, names) for item in value]
    return value


def _from(sender: str, recipient: str, ts: Any = 1458692752478) -> JSONObject:
    return {"sender": {"id": sender}, "recipient": {"id": recipient}, "timestamp": ts}


_PAGE_IN = ("<PSID>", "<PAGE_ID>")
_IG_IN = ("<IGSID>", "<IGID>")

DOCUMENTED_SHAPES: tuple[DocumentedShape, ...] = (
    # ------------------------------------------------------------- Messenger: messages
    DocumentedShape(
        "messenger text with quick reply",
        _MESSENGER + "messages",
        "page",
        {
            **_from(*_PAGE_IN),
            "message": {
                "mid": "<MID>",
                "text": "hello, world!",
                "quick_reply": {"payload": "<DEVELOPER_DEFINED_PAYLOAD>"},
            },
        },
        "stored",
    ),
    DocumentedShape(
        "messenger reply to a message",
        _MESSENGER + "messages",
        "page",
        {
            **_from(*_PAGE_IN),
            "message": {
                "mid": "<MID>",
                "text": "hello, world!",
                "reply_to": {"mid": "<MID_2>", "is_self_reply": False},
            },
        },
        "stored",
    ),
    DocumentedShape(
        "messenger attachment",
        _MESSENGER + "messages",
        "page",
        {
            **_from(*_PAGE_IN, 1518479195308),
            "message": {
                "mid": "<MID>",
                "attachments": [{"type": "image", "payload": {"url": "https://cdn.example/a.jpg"}}],
            },
        },
        "stored",
    ),
    DocumentedShape(
        "messenger sticker (sticker and image during the transition)",
        _MESSENGER + "messages",
        "page",
        {
            **_from(*_PAGE_IN),
            "message": {
                "mid": "<MID>",
                "attachments": [
                    {"type": "sticker", "payload": {"url": "https://cdn.example/s.png", "sticker_id": 369239263222822}},
                    {"type": "image", "payload": {"url": "https://cdn.example/s.png", "sticker_id": 369239263222822}},
                ],
            },
        },
        "stored",
    ),
    DocumentedShape(
        "messenger fallback without payload",
        _MESSENGER + "messages",
        "page",
        {**_from(*_PAGE_IN), "message": {"mid": "<MID>", "attachments": [{"type": "fallback"}]}},
        "stored",
    ),
    DocumentedShape(
        "messenger product template",
        _MESSENGER + "messages",
        "page",
        {
            **_from(*_PAGE_IN),
            "message": {
                "mid": "<MID>",
                "attachments": [
                    {
                        "type": "template",
                        "payload": {
                            "product": {
                                "elements": [
                                    {
                                        "id": "<PRODUCT_ID>",
                                        "retailer_id": "<EXTERNAL_ID>",
                                        "image_url": "https://cdn.example/p.jpg",
                                        "title": "<TITLE_OF_THE_PRODUCT>",
                                        "subtitle": "<PRODUCT_SUBTITLE>",
                                    }
                                ]
                            }
                        },
                    }
                ],
            },
        },
        "stored",
    ),
    DocumentedShape(
        "messenger message from a click-to-Messenger ad",
        _MESSENGER + "messages",
        "page",
        {
            **_from(*_PAGE_IN),
            "message": {
                "mid": "<MID>",
                "text": "Is this still available?",
                "referral": {
                    "ref": "<REF_DATA_IF_SPECIFIED_IN_THE_AD>",
                    "ad_id": "<ID_OF_THE_AD>",
                    "source": "ADS",
                    "type": "OPEN_THREAD",
                    "ads_context_data": {
                        "ad_title": "<TITLE_OF_THE_AD>",
                        "photo_url": "https://cdn.example/ad.jpg",
                        "post_id": "<ID_OF_THE_POST>",
                        "product_id": "<PRODUCT_ID>",
                    },
                },
            },
        },
        "stored",
    ),
    DocumentedShape(
        "messenger echo",
        _MESSENGER + "message-echoes",
        "page",
        {
            **_from("<PAGE_ID>", "<PSID>", 1457764197627),
            "message": {
                "is_echo": True,
                "app_id": 1517776481860111,
                "metadata": "<DEVELOPER_DEFINED_METADATA_STRING>",
                "mid": "<MID>",
                "text": "hello, world!",
            },
        },
        "stored",
    ),
    DocumentedShape(
        "messenger echo under standby",
        _MESSENGER + "message-echoes",
        "page",
        {
            **_from("<PAGE_ID>", "<PSID>", 1570053170673),
            "message": {"mid": "<MID>", "is_echo": True, "text": "Sent from the Page inbox", "app_id": 263902037430900},
        },
        "stored",
        where="standby",
    ),
    # ------------------------------------------------------------ Messenger: postbacks
    DocumentedShape(
        "messenger postback (field/value, user_ref sender, seconds as a string)",
        _MESSENGER + "messaging_postbacks",
        "page",
        {
            "field": "messaging_postbacks",
            "value": {
                "sender": {"user_ref": "USER-REF-ID"},
                "recipient": {"id": "<PAGE_ID>"},
                "timestamp": "1527459824",
                "postback": {
                    "mid": "<MID>",
                    "title": "TITLE-FOR-THE-CTA",
                    "payload": "USER-DEFINED-PAYLOAD",
                    "referral": {"ref": "USER-DEFINED-REFERRAL-PARAM", "source": "SHORT-URL", "type": "OPEN_THREAD"},
                },
            },
        },
        # A person known only by a plugin's user_ref has no PSID: no contact to file it under.
        "ignored",
        where="changes",
    ),
    DocumentedShape(
        "messenger postback (field/value, PSID sender, seconds as a string)",
        _MESSENGER + "messaging_postbacks",
        "page",
        {
            "field": "messaging_postbacks",
            "value": {
                "sender": {"id": "<PSID>"},
                "recipient": {"id": "<PAGE_ID>"},
                "timestamp": "1527459824",
                "postback": {
                    "mid": "<MID>",
                    "title": "TITLE-FOR-THE-CTA",
                    "payload": "USER-DEFINED-PAYLOAD",
                    "referral": {"ref": "USER-DEFINED-REFERRAL-PARAM", "source": "SHORT-URL", "type": "OPEN_THREAD"},
                },
            },
        },
        "stored",
        where="changes",
    ),
    DocumentedShape(
        "messenger postback in messaging[] (Get Started, no mid)",
        _MESSENGER + "messaging_postbacks",
        "page",
        {**_from(*_PAGE_IN), "postback": {"title": "Get Started", "payload": "USER_DEFINED_PAYLOAD"}},
        "stored",
    ),
    # ---------------------------------------------------------- Messenger: the others
    DocumentedShape(
        "messenger reaction",
        _MESSENGER + "message-reactions",
        "page",
        {
            **_from(*_PAGE_IN, 1458668856463),
            "reaction": {"reaction": "love", "emoji": "\u2764\ufe0f", "action": "react", "mid": "<MID>"},
        },
        "stored",
    ),
    DocumentedShape(
        "messenger unreact",
        _MESSENGER + "message-reactions",
        "page",
        {**_from(*_PAGE_IN, 1458668856463), "reaction": {"action": "unreact", "mid": "<MID>"}},
        "stored",
    ),
    DocumentedShape(
        "messenger read",
        _MESSENGER + "message-reads",
        "page",
        {**_from(*_PAGE_IN, 1458668856463), "read": {"watermark": 1458668856253}},
        "stored",
    ),
    DocumentedShape(
        "messenger delivery (no timestamp)",
        _MESSENGER + "message-deliveries",
        "page",
        {
            "sender": {"id": "<PSID>"},
            "recipient": {"id": "<PAGE_ID>"},
            "delivery": {"mids": ["<MID>"], "watermark": 1458668856253},
        },
        "stored",
    ),
    DocumentedShape(
        "messenger delivery without mids",
        _MESSENGER + "message-deliveries",
        "page",
        {**_from(*_PAGE_IN), "delivery": {"watermark": 1458668856253}},
        "stored",
    ),
    DocumentedShape(
        "messenger edit (num_edit as a string)",
        _MESSENGER + "message-edits",
        "page",
        {**_from(*_PAGE_IN, 1458668856463), "message_edit": {"mid": "<MID>", "text": "<TEXT>", "num_edit": "2"}},
        "stored",
    ),
    DocumentedShape(
        "messenger referral from an m.me link",
        _MESSENGER + "messaging_referrals",
        "page",
        {
            **_from(*_PAGE_IN),
            "referral": {"ref": "<REF_DATA_PASSED_IN_M.ME_PARAM>", "source": "SHORTLINK", "type": "OPEN_THREAD"},
        },
        "stored",
    ),
    DocumentedShape(
        "messenger referral from an ad",
        _MESSENGER + "messaging_referrals",
        "page",
        {
            **_from(*_PAGE_IN),
            "referral": {
                "ref": "<REF_DATA_IF_SPECIFIED_IN_THE_AD>",
                "ad_id": "<ID_OF_THE_AD>",
                "source": "ADS",
                "type": "OPEN_THREAD",
                "ads_context_data": {
                    "ad_title": "<TITLE_OF_THE_AD>",
                    "photo_url": "https://cdn.example/ad.jpg",
                    "video_url": "https://cdn.example/ad.mp4",
                    "post_id": "<ID_OF_THE_POST>",
                    "product_id": "<PRODUCT_ID>",
                    "flow_id": "<ID_OF_THE_PARTNER_APP_WELCOME_MESSAGE_FLOW>",
                },
            },
        },
        "stored",
    ),
    DocumentedShape(
        "messenger referral from the chat plugin (user_ref sender)",
        _MESSENGER + "messaging_referrals",
        "page",
        {
            "sender": {"user_ref": "<USER_REF>"},
            "recipient": {"id": "<PAGE_ID>"},
            "timestamp": 1458692752478,
            "referral": {
                "ref": "<REF_DATA_PASSED_IN_CODE>",
                "source": "CUSTOMER_CHAT_PLUGIN",
                "type": "OPEN_THREAD",
                "referer_uri": "https://shop.example/page",
            },
        },
        "ignored",
    ),
    DocumentedShape(
        "messenger opt-in to notification messages",
        _MESSENGER + "messaging_optins",
        "page",
        {
            **_from(*_PAGE_IN, "1458692752478"),
            "optin": {
                "type": "notification_messages",
                "payload": "ADDITIONAL-INFORMATION",
                "notification_messages_token": "NOTIFICATION-MESSAGES-TOKEN",
                "notification_messages_frequency": "DAILY",
                "notification_messages_timezone": "Europe/Kyiv",
                "token_expiry_timestamp": "1458692752478",
                "user_token_status": "NOT_REFRESHED",
                "notification_messages_status": "RESUME_NOTIFICATIONS",
                "title": "TITLE",
            },
        },
        "ignored",
    ),
    DocumentedShape(
        "messenger opt-in from a checkbox plugin (user_ref sender)",
        _MESSENGER + "messaging_optins",
        "page",
        {
            "recipient": {"id": "<PAGE_ID>"},
            "timestamp": 1458692752478,
            "optin": {"ref": "<PASS_THROUGH_PARAM>", "user_ref": "<REF_FROM_CHECKBOX_PLUGIN>"},
        },
        "ignored",
    ),
    DocumentedShape(
        "messenger pass_thread_control",
        _MESSENGER + "messaging_handovers",
        "page",
        {
            **_from(*_PAGE_IN),
            "pass_thread_control": {
                "previous_owner_app_id": None,
                "new_owner_app_id": "123456789",
                "metadata": "Additional content that the caller wants to set",
            },
        },
        "ignored",
    ),
    DocumentedShape(
        "messenger take_thread_control",
        _MESSENGER + "messaging_handovers",
        "page",
        {
            **_from(*_PAGE_IN),
            "take_thread_control": {
                "previous_owner_app_id": "123456789",
                "new_owner_app_id": "987654321",
                "metadata": "x",
            },
        },
        "ignored",
    ),
    DocumentedShape(
        "messenger request_thread_control",
        _MESSENGER + "messaging_handovers",
        "page",
        {**_from(*_PAGE_IN), "request_thread_control": {"requested_owner_app_id": 123456789, "metadata": "x"}},
        "ignored",
    ),
    DocumentedShape(
        "messenger app_roles (no sender)",
        _MESSENGER + "messaging_handovers",
        "page",
        {
            "recipient": {"id": "<PAGE_ID>"},
            "timestamp": 1458692752478,
            "app_roles": {"123456789": ["primary_receiver"]},
        },
        "ignored",
    ),
    DocumentedShape(
        "messenger standby message",
        _MESSENGER + "standby",
        "page",
        {**_from(*_PAGE_IN), "message": {"mid": "<MID>", "text": "hello, world!"}},
        "stored",
        where="standby",
    ),
    DocumentedShape(
        "messenger policy enforcement (no sender)",
        _MESSENGER + "messaging_policy_enforcement",
        "page",
        {
            "recipient": {"id": "<PAGE_ID>"},
            "timestamp": 1458692752478,
            "policy-enforcement": {"action": "block", "reason": "The bot violated our Platform Policies."},
        },
        "ignored",
    ),
    DocumentedShape(
        "messenger account linking",
        _MESSENGER + "messaging_account_linking",
        "page",
        {
            **_from(*_PAGE_IN),
            "account_linking": {"status": "linked", "authorization_code": "PASS_THROUGH_AUTHORIZATION_CODE"},
        },
        "ignored",
    ),
    DocumentedShape(
        "messenger message (field/value, as the dashboard's test sends it)",
        _MESSENGER + "messages",
        "page",
        {
            "field": "messages",
            "value": {
                "sender": {"id": "<PSID>"},
                "recipient": {"id": "<PAGE_ID>"},
                "timestamp": "1527459824",
                "message": {"mid": "<MID>", "text": "test_message"},
            },
        },
        "stored",
        where="changes",
    ),
    # ------------------------------------------------------------------- Instagram
    DocumentedShape(
        "instagram text",
        _INSTAGRAM,
        "instagram",
        {**_from(*_IG_IN, 1569262485349), "message": {"mid": "<MID>", "text": "MESSAGE-TEXT"}},
        "stored",
    ),
    DocumentedShape(
        "instagram attachments",
        _INSTAGRAM,
        "instagram",
        {
            **_from(*_IG_IN, 1569262485349),
            "message": {
                "mid": "<MID>",
                "attachments": [
                    {"type": "image", "payload": {"url": "https://cdn.example/1.jpg"}},
                    {"type": "video", "payload": {"url": "https://cdn.example/2.mp4"}},
                ],
            },
        },
        "stored",
    ),
    DocumentedShape(
        "instagram share",
        _INSTAGRAM,
        "instagram",
        {
            **_from(*_IG_IN),
            "message": {
                "mid": "<MID>",
                "attachments": [{"type": "share", "payload": {"url": "https://cdn.example/post"}}],
            },
        },
        "stored",
    ),
    DocumentedShape(
        "instagram story mention",
        _INSTAGRAM,
        "instagram",
        {
            **_from(*_IG_IN),
            "message": {
                "mid": "<MID>",
                "attachments": [{"type": "story_mention", "payload": {"url": "https://cdn.example/story"}}],
            },
        },
        "stored",
    ),
    DocumentedShape(
        "instagram reel",
        _INSTAGRAM,
        "instagram",
        {
            **_from(*_IG_IN),
            "message": {
                "mid": "<MID>",
                "attachments": [
                    {
                        "type": "ig_reel",
                        "payload": {"reel_video_id": "<REEL_ID>", "title": "x", "url": "https://cdn.example/r"},
                    }
                ],
            },
        },
        "stored",
    ),
    DocumentedShape(
        "instagram story reply",
        _INSTAGRAM,
        "instagram",
        {
            **_from(*_IG_IN),
            "message": {
                "mid": "<MID>",
                "text": "MESSAGE-TEXT",
                "reply_to": {"story": {"url": "https://cdn.example/st", "id": "<STORY_ID>"}},
            },
        },
        "stored",
    ),
    DocumentedShape(
        "instagram reply to a message",
        _INSTAGRAM,
        "instagram",
        {**_from(*_IG_IN), "message": {"mid": "<MID>", "text": "MESSAGE-TEXT", "reply_to": {"mid": "<MID_2>"}}},
        "stored",
    ),
    DocumentedShape(
        "instagram quick reply",
        _INSTAGRAM,
        "instagram",
        {
            **_from(*_IG_IN),
            "message": {"mid": "<MID>", "text": "Price", "quick_reply": {"payload": "<QUICK_REPLY_PAYLOAD>"}},
        },
        "stored",
    ),
    DocumentedShape(
        "instagram message from a shop product",
        _INSTAGRAM,
        "instagram",
        {
            **_from(*_IG_IN),
            "message": {"mid": "<MID>", "text": "Is it in stock?", "referral": {"product": {"id": "<PRODUCT_ID>"}}},
        },
        "stored",
    ),
    DocumentedShape(
        "instagram message from an ad",
        _INSTAGRAM,
        "instagram",
        {
            **_from(*_IG_IN),
            "message": {
                "mid": "<MID>",
                "text": "Hi",
                "referral": {
                    "ref": "<REF>",
                    "ad_id": "<AD_ID>",
                    "source": "ADS",
                    "type": "OPEN_THREAD",
                    "ads_context_data": {"ad_title": "<AD_TITLE>", "photo_url": "https://cdn.example/ad.jpg"},
                },
            },
        },
        "stored",
    ),
    DocumentedShape(
        "instagram deleted message",
        _INSTAGRAM,
        "instagram",
        {**_from(*_IG_IN), "message": {"mid": "<MID>", "is_deleted": True}},
        "stored",
    ),
    DocumentedShape(
        "instagram unsupported message",
        _INSTAGRAM,
        "instagram",
        {**_from(*_IG_IN), "message": {"mid": "<MID>", "is_unsupported": True}},
        "stored",
    ),
    DocumentedShape(
        "instagram echo",
        _INSTAGRAM,
        "instagram",
        {**_from("<IGID>", "<IGSID>"), "message": {"mid": "<MID>", "text": "MESSAGE-TEXT", "is_echo": True}},
        "stored",
    ),
    DocumentedShape(
        "instagram postback (icebreaker or generic template)",
        _INSTAGRAM,
        "instagram",
        {
            **_from(*_IG_IN),
            "postback": {
                "mid": "<MID>",
                "title": "SELECTED-ICEBREAKER-REPLY-OR-CTA-BUTTON",
                "payload": "CUSTOMER-RESPONSE-PAYLOAD",
            },
        },
        "stored",
    ),
    DocumentedShape(
        "instagram reaction",
        _INSTAGRAM,
        "instagram",
        {
            **_from(*_IG_IN),
            "reaction": {"mid": "<MID>", "action": "react", "reaction": "love", "emoji": "\u2764\ufe0f"},
        },
        "stored",
    ),
    DocumentedShape(
        "instagram unreact",
        _INSTAGRAM,
        "instagram",
        {**_from(*_IG_IN), "reaction": {"mid": "<MID>", "action": "unreact"}},
        "stored",
    ),
    DocumentedShape(
        "instagram seen",
        _INSTAGRAM,
        "instagram",
        {**_from(*_IG_IN), "read": {"mid": "<MID>"}},
        "stored",
    ),
    DocumentedShape(
        "instagram referral from an ig.me link",
        _INSTAGRAM,
        "instagram",
        {
            **_from(*_IG_IN),
            "referral": {"ref": "<IGME_LINK_REF_PARAMETER_VALUE>", "source": "IGME-SOURCE-LINK", "type": "OPEN_THREAD"},
        },
        "stored",
    ),
    DocumentedShape(
        "instagram standby message",
        _INSTAGRAM,
        "instagram",
        {**_from(*_IG_IN), "message": {"mid": "<MID>", "text": "MESSAGE-TEXT"}},
        "stored",
        where="standby",
    ),
    DocumentedShape(
        "instagram comment (changes[])",
        _INSTAGRAM_EXAMPLES,
        "instagram",
        {
            "field": "comments",
            "value": {
                "id": "<COMMENT_ID>",
                "from": {"id": "<IGSID>", "username": "<USERNAME>"},
                "text": "<COMMENT_TEXT>",
                "media": {"id": "<MEDIA_ID>", "media_product_type": "FEED"},
            },
        },
        "ignored",
        where="changes",
    ),
    DocumentedShape(
        "instagram comment (field/value in the entry, as the examples page shows it)",
        _INSTAGRAM_EXAMPLES,
        "instagram",
        {
            "id": "<IGID>",
            "time": 1700000000000,
            "field": "live_comments",
            "value": {
                "id": "<COMMENT_ID>",
                "from": {"id": "<IGSID>", "username": "<USERNAME>"},
                "text": "<COMMENT_TEXT>",
                "media": {"id": "<MEDIA_ID>", "media_product_type": "LIVE"},
            },
        },
        "ignored",
        where="entry",
    ),
    DocumentedShape(
        "instagram mention",
        _INSTAGRAM_EXAMPLES,
        "instagram",
        {"field": "mentions", "value": {"media_id": "<MEDIA_ID>", "comment_id": "<COMMENT_ID>"}},
        "ignored",
        where="changes",
    ),
    DocumentedShape(
        "instagram story insights",
        _INSTAGRAM_EXAMPLES,
        "instagram",
        {
            "field": "story_insights",
            "value": {
                "media_id": "<MEDIA_ID>",
                "impressions": 44,
                "reach": 44,
                "taps_forward": 3,
                "taps_back": 0,
                "exits": 3,
                "replies": 0,
            },
        },
        "ignored",
        where="changes",
    ),
    DocumentedShape(
        "instagram messages notification as a top-level array",
        _INSTAGRAM_EXAMPLES,
        "instagram",
        [
            {
                "object": "instagram",
                "entry": [
                    {
                        "id": "<IGID>",
                        "time": 1700000000000,
                        "messaging": [
                            {**_from(*_IG_IN, 1700000000000), "message": {"mid": "<MID>", "text": "MESSAGE-TEXT"}}
                        ],
                    }
                ],
            }
        ],
        "stored",
        where="body",
    ),
)
"""Every documented example, Messenger first."""

"""What a notification says: Telegram HTML built by small pure functions.

Everything that comes from crm, the customer or Meta (names, stages, message text, the
AI's summary, Meta's error text) is escaped here; the rest is our own markup. Long
customer text is cut to a preview before it is escaped, so an entity is never cut in half.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from jggl_common.contracts import (
    ChannelNeedsReauthData,
    ContactRef,
    DealSnapshot,
    HotLeadData,
    MessageFailedData,
    MessageReceivedData,
)

__all__ = [
    "OPEN_IN_CRM",
    "PREVIEW_CHARS",
    "REASONS",
    "SUMMARY_CHARS",
    "failure_reason",
    "open_in_crm",
    "platform_name",
    "preview",
    "render_hot_lead",
    "render_needs_reauth",
    "render_new_lead",
    "render_new_message",
    "render_reply_failed",
    "render_unlinked",
]

OPEN_IN_CRM = "Open in CRM"
PREVIEW_CHARS = 300
SUMMARY_CHARS = 600
_PLATFORMS = {"messenger": "Messenger", "instagram": "Instagram"}

REASONS = {
    "window_closed": "the 24-hour window to answer has closed: the customer has to write first",
    "token_invalid": "the channel's access token is no longer valid: an admin has to reconnect the channel",
    "throttled": "Meta kept asking to slow down (rate limit): try again in a while",
    "unreachable": "Meta did not answer: try again in a while",
    "meta_error": "Meta refused it",
}


def platform_name(platform: str) -> str:
    """``instagram`` → ``Instagram`` (escaped: an unknown platform is shown as it came)."""
    return html.escape(_PLATFORMS.get(platform, platform))


def _cut(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _attachment_kind(attachment: dict[str, Any]) -> str:
    kind = attachment.get("type") or attachment.get("kind") or "attachment"
    return f"[{kind}]"


def preview(text: str | None, attachments: Iterable[dict[str, Any]] = (), kind: str = "text") -> str:
    """The first ``PREVIEW_CHARS`` characters of the text, escaped, then each attachment
    as its kind (``[image]``); a message with neither shows its kind."""
    parts = [_attachment_kind(a) for a in attachments]
    if text and text.strip():
        parts.insert(0, _cut(text, PREVIEW_CHARS))
    if not parts:
        parts = [f"[{kind}]"]
    return html.escape(" ".join(parts))


def open_in_crm(app_url: str, deal_id: int) -> InlineKeyboardMarkup:
    """The keyboard of a deal's notification: one button opening the deal in the CRM."""
    url = f"{app_url.rstrip('/')}/deals/{deal_id}"
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text=OPEN_IN_CRM, url=url)]])


def _heading(icon: str, title: str, contact: ContactRef, platform: str, stage: str) -> str:
    name = html.escape(contact.display_name)
    return f"{icon} <b>{title}</b>\n<b>{name}</b> · {platform_name(platform)}\nStage: {html.escape(stage)}"


def render_new_lead(deal: DealSnapshot, app_url: str) -> tuple[str, InlineKeyboardMarkup]:
    """A new deal: who, where, which stage."""
    return _heading("🆕", "New lead", deal.contact, deal.platform, deal.stage), open_in_crm(app_url, deal.id)


def render_new_message(message: MessageReceivedData, app_url: str) -> tuple[str, InlineKeyboardMarkup]:
    """A customer wrote again on a deal: who, where, which stage, and what they wrote."""
    heading = _heading("💬", "New message", message.contact, message.contact.platform, message.deal_stage)
    text = f"{heading}\n\n{preview(message.text, message.attachments, message.kind)}"
    return text, open_in_crm(app_url, message.deal_id)


def render_hot_lead(lead: HotLeadData, app_url: str) -> tuple[str, InlineKeyboardMarkup]:
    """The AI rates a deal hot: its summary, the intent and the next action it suggests."""
    deal = lead.deal
    lines = [
        _heading("🔥", "Hot lead", deal.contact, deal.platform, deal.stage),
        "",
        f"<b>Summary:</b> {html.escape(_cut(lead.summary, SUMMARY_CHARS))}",
        f"<b>Intent:</b> {html.escape(lead.intent)}",
    ]
    if lead.next_action and lead.next_action.strip():
        lines.append(f"<b>Next:</b> {html.escape(_cut(lead.next_action, SUMMARY_CHARS))}")
    return "\n".join(lines), open_in_crm(app_url, deal.id)


def failure_reason(failure: MessageFailedData) -> str:
    """Why a reply was not delivered, in plain words (Meta's own text when it refused)."""
    words = REASONS.get(failure.reason, failure.reason)
    if failure.reason == "meta_error":
        code = f" (code {failure.error_code})" if failure.error_code is not None else ""
        detail = failure.error_message.strip()
        words = f"{words}{code}: {detail}" if detail else f"{words}{code}"
    return html.escape(words)


def render_reply_failed(failure: MessageFailedData, app_url: str) -> tuple[str, InlineKeyboardMarkup]:
    """A reply that will not reach the customer: which one, and why."""
    heading = _heading("⚠️", "Reply not delivered", failure.contact, failure.contact.platform, failure.deal_stage)
    text = f"{heading}\n\nReply: {preview(failure.text, (), failure.kind)}\n<b>Why:</b> {failure_reason(failure)}"
    return text, open_in_crm(app_url, failure.deal_id)


def render_needs_reauth(channel: ChannelNeedsReauthData) -> str:
    """A channel whose token Meta refused, for the admins."""
    name = html.escape(channel.channel_name or channel.external_id)
    code = f" (code {channel.error_code})" if channel.error_code is not None else ""
    return (
        f"🔑 <b>Channel needs reconnecting</b>\n"
        f"<b>{name}</b> · {platform_name(channel.platform)}\n"
        f"Meta refused its access token{code}: {html.escape(channel.error_message.strip())}\n"
        "Replies on this channel fail until an admin reconnects it in the CRM."
    )


UNLINK_REASONS = {
    "self": "you unlinked it in the CRM",
    "admin": "an admin unlinked it in the CRM",
    "deactivated": "your CRM account was deactivated",
}


def render_unlinked(reason: str) -> str:
    """The goodbye to a chat crm unlinked."""
    why = html.escape(UNLINK_REASONS.get(reason, reason))
    return (
        f"🔕 <b>This chat is no longer linked to the CRM</b> ({why}).\n"
        "You will receive no more notifications here; a new link code from the CRM links it again."
    )

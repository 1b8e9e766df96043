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
    HotLeadData,
    MessageFailedData,
    MessageReceivedData,
)

__all__ = [
    "OPEN_IN_CRM",
    "PREVIEW_CHARS",
    "REASONS",
    "REPLY",
    "REPLY_DATA",
    "SUMMARY_CHARS",
    "TAKE",
    "TAKE_DATA",
    "contact_name",
    "deal_keyboard",
    "deal_url",
    "failure_reason",
    "plain_preview",
    "platform_name",
    "preview",
    "renamed",
    "render_action_rejected",
    "render_already_yours",
    "render_hot_lead",
    "render_needs_reauth",
    "render_new_lead",
    "render_new_message",
    "render_reply_failed",
    "render_reply_sent",
    "render_taken",
    "render_unlinked",
]

OPEN_IN_CRM = "Open in CRM"
TAKE = "Take"
REPLY = "Reply"
TAKE_DATA = "take"
REPLY_DATA = "reply"
"""Callback data of the buttons: ``take:<deal id>``, ``reply:<deal id>``."""
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


def plain_preview(text: str | None, attachments: Iterable[dict[str, Any]] = (), kind: str = "text") -> str:
    """The first ``PREVIEW_CHARS`` characters of the text, then each attachment as its kind
    (``[image]``); a message with neither shows its kind. Not escaped."""
    parts = [_attachment_kind(a) for a in attachments]
    if text and text.strip():
        parts.insert(0, _cut(text, PREVIEW_CHARS))
    if not parts:
        parts = [f"[{kind}]"]
    return " ".join(parts)


def preview(text: str | None, attachments: Iterable[dict[str, Any]] = (), kind: str = "text") -> str:
    """:func:`plain_preview`, escaped."""
    return html.escape(plain_preview(text, attachments, kind))


def deal_url(app_url: str, deal_id: int) -> str:
    """Where the deal opens in the CRM."""
    return f"{app_url.rstrip('/')}/deals/{deal_id}"


def deal_keyboard(app_url: str, deal_id: int, assignee_id: int | None) -> InlineKeyboardMarkup:
    """The keyboard of a deal's notification: open it in the CRM, take it (only while
    nobody has it) and reply to the customer from Telegram."""
    buttons = [InlineKeyboardButton(text=OPEN_IN_CRM, url=deal_url(app_url, deal_id))]
    if assignee_id is None:
        buttons.append(InlineKeyboardButton(text=TAKE, callback_data=f"{TAKE_DATA}:{deal_id}"))
    buttons.append(InlineKeyboardButton(text=REPLY, callback_data=f"{REPLY_DATA}:{deal_id}"))
    return InlineKeyboardMarkup(inline_keyboard=[buttons])


def _ai_line(summary: str | None) -> str:
    return f"\n\n🤖 <i>{html.escape(_cut(summary, SUMMARY_CHARS))}</i>" if summary and summary.strip() else ""


def contact_name(contact: ContactRef) -> str:
    """The customer's name as managers know it; until Meta's profile has been read (crm
    falls back to the platform's numeric id), "a new customer" rather than a number."""
    if contact.display_name == contact.external_id:
        return "New customer"
    return contact.display_name


def _name_line(name: str) -> str:
    """How a notification about a deal starts its customer's line (the name, escaped)."""
    return f"\n<b>{html.escape(name)}</b> · "


def renamed(text: str, old: str, new: str) -> str | None:
    """A notification's ``text`` with its customer shown as ``new`` instead of ``old``
    (None when the text has no such line). The line is the first one naming the customer
    in bold before the platform; customer text below it is escaped, so it cannot look alike."""
    before = _name_line(old)
    if before not in text:
        return None
    return text.replace(before, _name_line(new), 1)


def _heading(icon: str, title: str, contact: ContactRef, platform: str, stage: str) -> str:
    line = _name_line(contact_name(contact))
    return f"{icon} <b>{title}</b>{line}{platform_name(platform)}\nStage: {html.escape(stage)}"


def render_new_lead(
    message: MessageReceivedData, app_url: str, summary: str | None = None
) -> tuple[str, InlineKeyboardMarkup]:
    """A new deal (its first message): who, where, which stage, what they wrote, and the
    AI's summary when there is one."""
    return _render_message("🆕", "New lead", message, app_url, summary)


def render_new_message(
    message: MessageReceivedData, app_url: str, summary: str | None = None
) -> tuple[str, InlineKeyboardMarkup]:
    """A customer wrote again on a deal: who, where, which stage, what they wrote, and the
    AI's summary of the conversation when there is one."""
    return _render_message("💬", "New message", message, app_url, summary)


def _render_message(
    icon: str, title: str, message: MessageReceivedData, app_url: str, summary: str | None
) -> tuple[str, InlineKeyboardMarkup]:
    heading = _heading(icon, title, message.contact, message.contact.platform, message.deal_stage)
    text = f"{heading}\n\n{preview(message.text, message.attachments, message.kind)}{_ai_line(summary)}"
    return text, deal_keyboard(app_url, message.deal_id, message.assignee_id)


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
    return "\n".join(lines), deal_keyboard(app_url, deal.id, deal.assignee_id)


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
    return text, deal_keyboard(app_url, failure.deal_id, failure.assignee_id)


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


def _deal_name(name: str | None) -> str:
    return f"<b>{html.escape(name)}</b>" if name else "the customer"


def render_taken(contact_name: str | None) -> str:
    """A manager's "Take" went through: the deal is theirs."""
    return f"✅ The deal is yours: {_deal_name(contact_name)}"


def render_already_yours(contact_name: str | None) -> str:
    """A manager's "Take" found the deal theirs already (crm changed nothing)."""
    return f"✅ The deal is already yours: {_deal_name(contact_name)}"


def render_reply_sent(contact_name: str | None) -> str:
    """A reply written in Telegram reached the customer."""
    return f"✅ Sent to {_deal_name(contact_name)}"


def render_action_rejected(kind: str, contact_name: str | None, reason: str) -> str:
    """crm refused a "Take" or a reply from Telegram: what, and crm's reason."""
    what = "Your reply to" if kind == "reply" else "Could not take the deal with"
    ending = " was not sent" if kind == "reply" else ""
    return f"❌ {what} {_deal_name(contact_name)}{ending}.\n<b>Why:</b> {html.escape(reason)}"

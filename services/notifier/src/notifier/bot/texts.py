"""What the bot says. Names come from crm and are escaped (the bot speaks Telegram HTML)."""

from __future__ import annotations

import html

INSTRUCTIONS = (
    "👋 This is the JGGL CRM bot.\n"
    "To receive notifications here, link your account: in the CRM open your profile, "
    "choose <b>Link Telegram</b>, and send me the command it shows "
    "(<code>/start CODE</code>), or open its link."
)
UNKNOWN_CODE = "❌ This link code is not valid. Ask for a new one in the CRM (profile → Link Telegram)."
USED_CODE = "❌ This link code was already used. Ask for a new one in the CRM (profile → Link Telegram)."
EXPIRED_CODE = "⌛ This link code has expired. Ask for a new one in the CRM (profile → Link Telegram)."
UNLINKED = "🔕 Your Telegram is unlinked: you will receive no more notifications here."
NOT_LINKED = "This chat is not linked to a CRM account."
HELP = (
    "I send you CRM notifications: new leads, new messages on your deals, hot leads, "
    "replies that could not be delivered and, to admins, channels to reconnect; "
    "with a button to open the deal in the CRM.\n\n"
    "/help: this message\n"
    "/stop: unlink this chat (no more notifications)"
)


def linked(name: str | None) -> str:
    who = f", {html.escape(name)}" if name else ""
    return f"✅ Linked{who}! You will receive CRM notifications in this chat.\n/help lists what I can do."


def already_linked(name: str) -> str:
    return f"This chat is linked to <b>{html.escape(name)}</b>.\n/help lists what I can do; /stop unlinks it."

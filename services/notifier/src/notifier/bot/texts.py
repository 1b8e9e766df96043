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
    "replies that could not be delivered and, to admins, channels to reconnect. "
    "Under each deal: <b>Open in CRM</b>, <b>Take</b> (while nobody has it) and <b>Reply</b> "
    "(your next message goes to the customer).\n\n"
    "/deals — your deals awaiting a reply, longest waiting first\n"
    "/stats — your figures today\n"
    "/mute — pause all notifications until /unmute\n"
    "/unmute — resume\n"
    "/quiet 22:00-08:00 — quiet hours (what arrives waits until they end); /quiet off\n"
    "/notify — choose which kinds of notification you get\n"
    "/cancel — drop a reply you started with Reply\n"
    "/stop — unlink this chat (no more notifications)\n"
    "/help — this message"
)


def linked(name: str | None) -> str:
    who = f", {html.escape(name)}" if name else ""
    return f"✅ Linked{who}! You will receive CRM notifications in this chat.\n/help lists what I can do."


def already_linked(name: str) -> str:
    return f"This chat is linked to <b>{html.escape(name)}</b>.\n/help lists what I can do; /stop unlinks it."


# ---------------------------------------------------------------- deal buttons and replies

TAKING = "Taking…"
ALREADY_YOURS = "This deal is already yours."
BAD_BUTTON = "This button no longer works."
SENDING = "⏳ Sending…"
CANCELLED = "Cancelled: nothing was sent."
NOTHING_TO_CANCEL = "There is no reply to cancel."


def write_reply(name: str | None) -> str:
    who = f"<b>{html.escape(name)}</b>" if name else "the customer"
    return f"✍️ Write your reply to {who} (/cancel to cancel)"


def draft_expired(minutes: int) -> str:
    return (
        f"⌛ Not sent: more than {minutes} minutes passed since you pressed <b>Reply</b>. "
        "Press <b>Reply</b> again to answer."
    )

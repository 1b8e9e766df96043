"""What the bot says about preferences: ``/mute``, ``/unmute``, ``/quiet`` and ``/notify``."""

from __future__ import annotations

import html
from datetime import datetime, time
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from notifier.preferences import Preferences

__all__ = [
    "ALWAYS_SENT",
    "KIND_LABELS",
    "MUTED",
    "PREF_DATA",
    "STALE_BUTTON",
    "kind_switched",
    "notify_keyboard",
    "notify_text",
    "quiet_invalid",
    "quiet_off",
    "quiet_set",
    "quiet_status",
    "unmuted",
]

PREF_DATA = "pref"
"""Callback data of the ``/notify`` switches: ``pref:<kind>``."""

KIND_LABELS = {
    "new_lead": "New leads",
    "new_message": "New messages",
    "hot_lead": "Hot leads",
    "reply_failed": "Replies not delivered",
    "sla_breach": "Overdue replies (SLA)",
    "task_due": "Tasks due",
    "daily_digest": "Daily digest",
    "channel_needs_reauth": "Channels to reconnect",
    "channel_health": "Channel health",
}

ALWAYS_SENT = "Always sent: notices about this link, your own replies that failed and answers to your commands."
MUTED = f"🔕 Notifications paused until /unmute.\n{ALWAYS_SENT}"
STALE_BUTTON = "This switch no longer works: send /notify again."
_EXAMPLE = "<code>/quiet 22:00-08:00</code>"


def _hhmm(value: time) -> str:
    return value.strftime("%H:%M")


def _waiting(count: int) -> str:
    return f"{count} waiting notification{'s' if count != 1 else ''}"


def _zone(zone: ZoneInfo) -> str:
    return html.escape(str(zone))


def unmuted(waiting: int, quiet_until: datetime | None, zone: ZoneInfo) -> str:
    text = "🔔 Notifications resumed."
    if waiting:
        when = f"at {quiet_until.astimezone(zone):%H:%M}, when your quiet hours end" if quiet_until else "now"
        text += f"\n{_waiting(waiting).capitalize()} will follow {when}."
    return text


def quiet_invalid(reason: str, zone: ZoneInfo) -> str:
    return (
        f"❌ That is not quiet hours ({html.escape(reason)}).\n"
        f"Send them as from-until on a 24-hour clock ({_zone(zone)} time), for example {_EXAMPLE}; "
        "<code>/quiet off</code> switches them off."
    )


def quiet_set(start: time, end: time, zone: ZoneInfo, quiet_until: datetime | None, waiting: int) -> str:
    text = (
        f"🌙 Quiet hours: {_hhmm(start)}–{_hhmm(end)} ({_zone(zone)} time). "
        "Notifications that arrive meanwhile wait until they end."
    )
    if quiet_until is not None:
        text += f"\nQuiet now, until {quiet_until.astimezone(zone):%H:%M}."
    elif waiting:
        text += f"\n{_waiting(waiting).capitalize()} will follow now."
    return text


def quiet_off(waiting: int) -> str:
    text = "☀️ Quiet hours off: notifications arrive as they happen."
    if waiting:
        text += f"\n{_waiting(waiting).capitalize()} will follow now."
    return text


def quiet_status(prefs: Preferences, zone: ZoneInfo, quiet_until: datetime | None) -> str:
    hours = prefs.quiet_hours
    if hours is None:
        return f"Quiet hours are off. Set them with {_EXAMPLE} ({_zone(zone)} time)."
    text = f"🌙 Quiet hours: {_hhmm(hours[0])}–{_hhmm(hours[1])} ({_zone(zone)} time)."
    if quiet_until is not None:
        text += f"\nQuiet now, until {quiet_until.astimezone(zone):%H:%M}."
    return text + f"\nChange them with {_EXAMPLE}, or <code>/quiet off</code>."


def notify_text(prefs: Preferences) -> str:
    text = f"🔔 <b>Your notifications</b>: tap one to switch it on or off.\n{ALWAYS_SENT}"
    if prefs.muted:
        text += "\n\n🔕 Everything is paused now: /unmute to resume."
    return text


def notify_keyboard(prefs: Preferences, kinds: tuple[str, ...]) -> InlineKeyboardMarkup:
    """One switch per kind: ✅ on, 🚫 off."""
    rows = [
        [
            InlineKeyboardButton(
                text=f"{'🚫' if kind in prefs.muted_kinds else '✅'} {KIND_LABELS[kind]}",
                callback_data=f"{PREF_DATA}:{kind}",
            )
        ]
        for kind in kinds
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def kind_switched(kind: str, prefs: Preferences) -> str:
    """The short answer to a switch pressed (shown by Telegram, plain text)."""
    return f"{KIND_LABELS[kind]}: {'off' if kind in prefs.muted_kinds else 'on'}"

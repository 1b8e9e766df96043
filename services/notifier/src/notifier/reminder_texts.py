"""What the scheduler's reminders say: an overdue reply (and its escalation), a task due,
a manager's daily digest. Telegram HTML built by pure functions; everything from crm or
the customer is escaped, times are shown in the business time zone."""

from __future__ import annotations

import html
from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from jggl_common.contracts import DailyDigestData, DealSnapshot, SlaBreachData, TaskDueData
from notifier.notification_texts import contact_name, deal_keyboard, deal_url, platform_name, preview

__all__ = [
    "DIGEST_DEALS",
    "duration",
    "render_daily_digest",
    "render_sla_breach",
    "render_task_due",
]

DIGEST_DEALS = 5
"""The longest-waiting deals a digest lists."""
_BUTTON_NAME_CHARS = 40


def duration(seconds: float) -> str:
    """A span as people say it: ``45 s``, ``12 min``, ``3 h 5 min``, ``2 d 4 h``."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total} s"
    minutes = total // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _moment(at: datetime, now: datetime, zone: ZoneInfo) -> str:
    """``14:05`` today (in ``zone``), else ``5 Dec 14:05``."""
    local = at.astimezone(zone)
    if local.date() == now.astimezone(zone).date():
        return local.strftime("%H:%M")
    return f"{local.day} {local.strftime('%b %H:%M')}"


def _deal_lines(deal: DealSnapshot) -> list[str]:
    return [
        f"<b>{html.escape(contact_name(deal.contact))}</b> · {platform_name(deal.platform)}",
        f"Stage: {html.escape(deal.stage)}",
    ]


def render_sla_breach(
    breach: SlaBreachData, app_url: str, zone: ZoneInfo, now: datetime
) -> tuple[str, InlineKeyboardMarkup]:
    """A customer waiting past the SLA: for the assignee (``breach``) or, past twice the
    SLA, for the admins (``escalation``)."""
    deal = breach.deal
    waited = duration(breach.waited_minutes * 60)
    sla = duration(breach.sla_minutes * 60)
    since = _moment(breach.waiting_since, now, zone)
    if breach.level == "breach":
        lines = [
            "⏰ <b>Reply overdue</b>",
            *_deal_lines(deal),
            f"Waiting {waited} for a reply (SLA {sla}), since {since}",
        ]
    else:
        lines = [
            "🚨 <b>Reply overdue: escalated</b>",
            *_deal_lines(deal),
            f"Waiting {waited} for a reply, more than twice the SLA ({sla}), since {since}",
        ]
        if deal.assignee_id is None:
            lines.append("Nobody has taken this deal.")
    if breach.last_text and breach.last_text.strip():
        lines += ["", f"Last message: {preview(breach.last_text)}"]
    return "\n".join(lines), deal_keyboard(app_url, deal.id, deal.assignee_id)


def render_task_due(task: TaskDueData, app_url: str, zone: ZoneInfo, now: datetime) -> tuple[str, InlineKeyboardMarkup]:
    """A task that reached its due time, with its deal."""
    lines = [
        "📌 <b>Task due</b>",
        f"<b>{html.escape(task.title)}</b>",
        f"Due {_moment(task.due_at, now, zone)}",
        "",
        *_deal_lines(task.deal),
    ]
    return "\n".join(lines), deal_keyboard(app_url, task.deal.id, task.deal.assignee_id)


def render_daily_digest(
    digest: DailyDigestData, app_url: str, now: datetime
) -> tuple[str, InlineKeyboardMarkup | None]:
    """A manager's day at a glance; the deals waiting longest (as of ``now``, when the digest
    was made) each with a button opening it."""
    day = digest.day
    lines = [
        f"📊 <b>Your day, {day.strftime('%a')} {day.day} {day.strftime('%b')}</b>",
        f"Open deals: {digest.open_deals}",
        f"Awaiting a reply: {digest.awaiting_reply} (past the SLA: {digest.sla_breaches})",
        f"Tasks due today: {digest.tasks_due_today}",
    ]
    if digest.replies_yesterday:
        median = digest.median_response_seconds_yesterday
        typical = f", median response {duration(median)}" if median is not None else ""
        lines.append(f"Replies yesterday: {digest.replies_yesterday}{typical}")
    else:
        lines.append("Replies yesterday: none")
    waiting = digest.longest_waiting[:DIGEST_DEALS]
    if not waiting:
        return "\n".join(lines), None
    lines += ["", "<b>Waiting longest</b>"]
    buttons = []
    for number, deal in enumerate(waiting, start=1):
        name = deal.display_name
        waited = duration((now - deal.waiting_since).total_seconds())
        lines.append(
            f"{number}. <b>{html.escape(name)}</b> · {platform_name(deal.platform)} · "
            f"{html.escape(deal.stage)}: {waited}"
        )
        label = name if len(name) <= _BUTTON_NAME_CHARS else name[: _BUTTON_NAME_CHARS - 1] + "…"
        buttons.append([InlineKeyboardButton(text=f"{number}. {label}", url=deal_url(app_url, deal.deal_id))])
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=buttons)

"""Admin alerts on channel health: ``crm.channel.health_changed`` → every linked admin.

crm's health check announces a channel once when its set of problems changes (a token
refused or expiring, the page's webhooks unsubscribed, a page silent in business hours)
and once when every problem is gone (``recovered``). The alert lists what is wrong now,
marks what is new since the previous check, and says what went away. Everything from crm
or Meta (names, Meta's error text) is escaped here.
"""

from __future__ import annotations

import html

from jggl_common.contracts import ChannelHealthChanged, ChannelHealthChangedData, ChannelHealthProblem
from notifier.notification_texts import platform_name
from notifier.notifications import Notifier

__all__ = ["PROBLEM_LABELS", "ChannelHealthNotifier", "render_channel_health"]

PROBLEM_LABELS = {
    "token_invalid": "Access token refused",
    "token_expiring": "Access token expiring",
    "token_missing": "No access token",
    "token_check_failed": "Token check failed",
    "not_subscribed": "Webhooks not subscribed",
    "subscription_check_failed": "Subscription check failed",
    "no_webhooks": "No webhooks lately",
}
"""How each problem code reads in an alert; an unknown code is shown as it came."""
MESSAGE_CHARS = 400
FIX_IT = "Fix it under Channels in the CRM; the next check confirms it."


def _label(code: str) -> str:
    return html.escape(PROBLEM_LABELS.get(code, code))


def _said(problem: ChannelHealthProblem) -> str:
    message = problem.message.strip()
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1].rstrip() + "…"
    return html.escape(message)


def render_channel_health(change: ChannelHealthChangedData) -> str:
    """The alert for a channel whose problems changed, or that recovered."""
    name = html.escape(change.channel_name or change.external_id)
    heading = f"<b>{name}</b> · {platform_name(change.platform)}"
    if change.recovered or not change.problems:
        fixed = ", ".join(_label(problem.code) for problem in change.previous_problems) or "—"
        return f"✅ <b>Channel healthy again</b>\n{heading}\nResolved: {fixed}."
    before = {problem.code for problem in change.previous_problems}
    lines = [f"⚠️ <b>Channel problem</b>\n{heading}"]
    for problem in change.problems:
        new = "" if problem.code in before else " (new)"
        lines.append(f"• <b>{_label(problem.code)}</b>{new}: {_said(problem)}")
    now = {problem.code for problem in change.problems}
    gone = [_label(problem.code) for problem in change.previous_problems if problem.code not in now]
    if gone:
        lines.append(f"Resolved: {', '.join(gone)}.")
    lines.append(FIX_IT)
    return "\n".join(lines)


class ChannelHealthNotifier(Notifier):
    """``crm.channel.health_changed`` → every linked admin (problems found, and recoveries)."""

    kind = "channel_health"

    async def handle(self, event: ChannelHealthChanged) -> None:
        recipients = await self.store.links_with_role("admin")
        if recipients:
            await self.deliver(
                event.id, recipients, render_channel_health(event.data), None, occurred_at=event.occurred_at
            )

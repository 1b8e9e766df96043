"""``/deals`` (my deals awaiting a reply) and ``/stats`` (my figures today, in the business
time zone), read from the notifier's projection of crm's deals."""

from __future__ import annotations

import html
from datetime import datetime

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import LinkPreviewOptions, Message

from jggl_common.contracts import utcnow
from notifier.bot import texts
from notifier.business_time import BusinessClock
from notifier.notification_texts import deal_url, platform_name
from notifier.projection import DealView, MyFigures, Projection, WaitingDeals
from notifier.store import Store

__all__ = ["DEALS_PREVIEW_CHARS", "duration", "make_router", "render_deals", "render_stats"]

DEALS_PREVIEW_CHARS = 100
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


def duration(seconds: float) -> str:
    """``45 min``, ``3 h 5 min``, ``2 d 4 h``; under a minute is ``<1 min`` (plain text:
    escape it in HTML)."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "<1 min"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _deal_lines(number: int, deal: DealView, app_url: str, now: datetime) -> list[str]:
    name = html.escape(deal.contact_name or f"Deal {deal.deal_id}")
    where = " · ".join(part for part in (platform_name(deal.platform or ""), html.escape(deal.stage or "")) if part)
    lines = [f"{number}. <b>{name}</b> · {where}"]
    if deal.last_customer_at is not None:
        waited = html.escape(duration((now - deal.last_customer_at).total_seconds()))
        lines.append(f"⏱ waiting {waited} (since their last message)")
    if deal.last_customer_text:
        lines.append(f"💬 {html.escape(_cut(deal.last_customer_text, DEALS_PREVIEW_CHARS))}")
    lines.append(f'<a href="{html.escape(deal_url(app_url, deal.deal_id))}">Open in CRM</a>')
    return lines


def render_deals(waiting: WaitingDeals, app_url: str, now: datetime | None = None) -> str:
    """``/deals``: the manager's deals awaiting a reply, then the unassigned count."""
    now = now or utcnow()
    if waiting.mine:
        blocks = ["📋 <b>Your deals awaiting a reply</b>, longest waiting first:"]
        blocks += ["\n".join(_deal_lines(i, deal, app_url, now)) for i, deal in enumerate(waiting.mine, 1)]
    else:
        blocks = ["✅ None of your deals is awaiting a reply."]
    blocks.append(f"📥 Unassigned deals awaiting a reply: {waiting.unassigned}")
    return "\n\n".join(blocks)


def render_stats(figures: MyFigures, zone: str) -> str:
    """``/stats``: the manager's figures today."""
    median = "—" if figures.median_response_seconds is None else html.escape(duration(figures.median_response_seconds))
    return (
        f"📊 <b>Your day</b> (today, {html.escape(zone)})\n"
        f"Replies sent: {figures.replies}\n"
        f"Median response time: {median}\n"
        f"Open deals assigned to you: {figures.open_deals}\n"
        f"Awaiting your reply now: {figures.awaiting_reply}"
    )


async def deals(message: Message, store: Store, projection: Projection, app_url: str) -> None:
    link = await store.link_of_chat(message.chat.id)
    if link is None:
        await message.answer(texts.INSTRUCTIONS)
        return
    await message.answer(
        render_deals(await projection.waiting(link.user_id), app_url), link_preview_options=_NO_PREVIEW
    )


async def stats(message: Message, store: Store, projection: Projection, clock: BusinessClock) -> None:
    link = await store.link_of_chat(message.chat.id)
    if link is None:
        await message.answer(texts.INSTRUCTIONS)
        return
    now = utcnow()
    figures = await projection.figures(link.user_id, clock.day_start(now), clock.next_day_start(now))
    await message.answer(render_stats(figures, str(clock.zone())))


def make_router() -> Router:
    """A fresh router of this feature (a router belongs to one dispatcher)."""
    router = Router(name="deals")
    router.message.register(deals, Command("deals"), F.chat.type == "private")
    router.message.register(stats, Command("stats"), F.chat.type == "private")
    return router

"""The notifier's durable consumers: link codes and unlinks from crm, Telegram updates from ingest
(webhook mode), the events that become notifications, and a customer's newer name (which
corrects the notifications already sent)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.types import Update
from pydantic import ValidationError

from jggl_common.bus import PermanentFailure, RetryPolicy, ServiceBus
from jggl_common.contracts import (
    AnalysisCompleted,
    ChannelHealthChanged,
    ChannelNeedsReauth,
    ContactUpdated,
    DailyDigest,
    DealHotLead,
    MessageFailed,
    MessageReceived,
    SlaBreached,
    TaskDue,
    TelegramLinkRequested,
    TelegramUnlinkRequested,
    TelegramUpdateReceived,
)
from jggl_common.logs import get_logger
from jggl_common.streams import AI, CRM, INGEST
from notifier.actions import ActionAnswers
from notifier.channel_alerts import ChannelHealthNotifier
from notifier.notifications import (
    DeferredNotifier,
    HotLeadNotifier,
    NewLeadNotifier,
    NewMessageNotifier,
    ReauthNotifier,
    ReplyFailedNotifier,
    UnlinkNotifier,
)
from notifier.projection import Projection
from notifier.reminders import DailyDigestNotifier, SlaBreachNotifier, TaskDueNotifier
from notifier.renames import ContactRenames
from notifier.store import Store
from notifier.updates import handle_update

__all__ = ["DURABLES", "Notifiers", "register"]

log = get_logger(__name__)

DURABLES = {
    "links": "notifier-links",
    "unlinks": "notifier-unlinks",
    "updates": "notifier-updates",
    "projection": "notifier-projection",
    "projection_ai": "notifier-projection-ai",
    "answers": "notifier-action-answers",
    "messages": "notifier-messages",
    "hot_leads": "notifier-hot-leads",
    "failed_replies": "notifier-failed-replies",
    "reauth": "notifier-reauth",
    "channel_health": "notifier-channel-health",
    "sla_breaches": "notifier-sla-breaches",
    "tasks_due": "notifier-tasks-due",
    "digests": "notifier-digests",
    "contacts": "notifier-contacts",
}


@dataclass(frozen=True, slots=True)
class Notifiers:
    """One notifier per kind of notification."""

    new_leads: NewLeadNotifier
    new_messages: NewMessageNotifier
    hot_leads: HotLeadNotifier
    failed_replies: ReplyFailedNotifier
    reauth: ReauthNotifier
    unlinks: UnlinkNotifier
    sla_breaches: SlaBreachNotifier
    tasks_due: TaskDueNotifier
    digests: DailyDigestNotifier
    deferred: DeferredNotifier
    """Not a consumer: sends what quiet hours held (started with the process)."""
    answers: ActionAnswers
    channel_health: ChannelHealthNotifier


def _parse(contract: Any, body: Any) -> Any:
    try:
        return contract.model_validate(body)
    except ValidationError as exc:
        raise PermanentFailure(f"malformed {contract.subject}: {exc}") from exc


def register(
    bus: ServiceBus,
    store: Store,
    bot: Bot | None,
    dispatcher: Dispatcher,
    notifiers: Notifiers,
    *,
    prefix: str = "",
    policy: RetryPolicy | None = None,
    current_bot: Callable[[], Bot | None] | None = None,
    projection: Projection,
) -> None:
    """Register the durable consumers of :data:`DURABLES` (``prefix`` + their names: tests
    run several notifiers side by side on one server); Telegram updates are answered with
    ``current_bot()`` when given (the bot of the live token), else with ``bot``."""

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["links"], stream=CRM, subject=TelegramLinkRequested.subject, policy=policy
    )
    async def on_link_requested(body: dict[str, Any]) -> None:
        event: TelegramLinkRequested = _parse(TelegramLinkRequested, body)
        await store.remember_code(event.data)

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["unlinks"], stream=CRM, subject=TelegramUnlinkRequested.subject, policy=policy
    )
    async def on_unlink_requested(body: dict[str, Any]) -> None:
        await notifiers.unlinks.handle(_parse(TelegramUnlinkRequested, body))

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["updates"],
        stream=INGEST,
        subject=TelegramUpdateReceived.subject,
        policy=policy,
        max_workers=1,  # one chat's updates in the order they came
    )
    async def on_telegram_update(body: dict[str, Any]) -> None:
        event: TelegramUpdateReceived = _parse(TelegramUpdateReceived, body)
        answering = current_bot() if current_bot is not None else bot
        if answering is None:
            log.info("Telegram update ignored: no bot token", update_id=event.data.update_id)
            return
        try:
            update = Update.model_validate(event.data.update, context={"bot": answering})
        except ValidationError as exc:
            raise PermanentFailure(f"malformed Telegram update {event.data.update_id}: {exc}") from exc
        # The same update stored again, or redelivered after it was answered, is skipped.
        await handle_update(store, answering, dispatcher, update)

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["messages"],
        stream=CRM,
        subject=MessageReceived.subject,
        policy=policy,
        max_workers=4,
    )
    async def on_message_received(body: dict[str, Any]) -> None:
        event: MessageReceived = _parse(MessageReceived, body)
        notifier = notifiers.new_leads if event.data.is_first_message else notifiers.new_messages
        await notifier.handle(event)

    # One consumer over the whole CRM stream each (this NATS has no multi-subject filters):
    # the handlers pick the event types they keep and acknowledge the rest at once.
    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["projection"], stream=CRM, subject="crm.>", policy=policy, max_workers=4
    )
    async def on_crm_event_for_projection(body: dict[str, Any]) -> None:
        await projection.apply_body(body)

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["projection_ai"],
        stream=AI,
        subject=AnalysisCompleted.subject,
        policy=policy,
        max_workers=4,
    )
    async def on_analysis_completed(body: dict[str, Any]) -> None:
        await projection.apply(_parse(AnalysisCompleted, body))

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["answers"], stream=CRM, subject="crm.>", policy=policy, max_workers=4
    )
    async def on_crm_event_for_answers(body: dict[str, Any]) -> None:
        await notifiers.answers.handle_body(body)

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["hot_leads"], stream=CRM, subject=DealHotLead.subject, policy=policy, max_workers=4
    )
    async def on_hot_lead(body: dict[str, Any]) -> None:
        await notifiers.hot_leads.handle(_parse(DealHotLead, body))

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["failed_replies"],
        stream=CRM,
        subject=MessageFailed.subject,
        policy=policy,
        max_workers=4,
    )
    async def on_message_failed(body: dict[str, Any]) -> None:
        await notifiers.failed_replies.handle(_parse(MessageFailed, body))

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["reauth"], stream=CRM, subject=ChannelNeedsReauth.subject, policy=policy
    )
    async def on_channel_needs_reauth(body: dict[str, Any]) -> None:
        await notifiers.reauth.handle(_parse(ChannelNeedsReauth, body))

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["channel_health"], stream=CRM, subject=ChannelHealthChanged.subject, policy=policy
    )
    async def on_channel_health_changed(body: dict[str, Any]) -> None:
        await notifiers.channel_health.handle(_parse(ChannelHealthChanged, body))

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["sla_breaches"], stream=CRM, subject=SlaBreached.subject, policy=policy, max_workers=4
    )
    async def on_sla_breached(body: dict[str, Any]) -> None:
        await notifiers.sla_breaches.handle(_parse(SlaBreached, body))

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["tasks_due"], stream=CRM, subject=TaskDue.subject, policy=policy, max_workers=4
    )
    async def on_task_due(body: dict[str, Any]) -> None:
        await notifiers.tasks_due.handle(_parse(TaskDue, body))

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["digests"], stream=CRM, subject=DailyDigest.subject, policy=policy, max_workers=4
    )
    async def on_daily_digest(body: dict[str, Any]) -> None:
        await notifiers.digests.handle(_parse(DailyDigest, body))

    def sending_bot() -> Bot | None:
        return current_bot() if current_bot is not None else bot

    renames = ContactRenames(store, projection, sending_bot)

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=prefix + DURABLES["contacts"], stream=CRM, subject=ContactUpdated.subject, policy=policy, max_workers=4
    )
    async def on_contact_updated(body: dict[str, Any]) -> None:
        await renames.handle(_parse(ContactUpdated, body))

"""What crm's message-consuming side needs, wired for the process composition root."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.analyses import AnalysisService
from crm.analyses import subscribers as analyses_subscribers
from crm.backfill import MetaBackfill
from crm.config import CrmSettings
from crm.graph import GraphClient
from crm.inbound import subscribers
from crm.inbound.service import InboundService
from crm.jobs import ScheduledWork
from crm.jobs import subscribers as jobs_subscribers
from crm.jobs.retention import RETENTION_DURABLE, crm_retention
from crm.outbound import subscribers as outbound_subscribers
from crm.outbound.commands import Commands
from crm.outbound.ratelimit import SendRateLimiter
from crm.outbound.sender import Sender
from crm.profiles import ProfileEnricher
from jggl_common.bus import RetryPolicy, ServiceBus
from jggl_common.outbox import Outbox
from jggl_common.retention import register as register_retention

__all__ = [
    "Outbound",
    "register_analyses",
    "register_inbound",
    "register_jobs",
    "register_outbound",
    "run_profile_sweeper",
]


def register_inbound(
    bus: ServiceBus,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    settings: CrmSettings,
    graph: GraphClient,
    *,
    enricher: ProfileEnricher | None = None,
    durable: str = subscribers.DURABLE,
    policy: RetryPolicy | None = None,
    max_workers: int | None = None,
) -> InboundService:
    """Register the consumer of ``ingest.meta.>`` on ``bus`` (start the bus afterwards).

    New contacts get their profile fetched in the background by ``enricher`` (one is
    made when none is given). ``max_workers`` defaults to ``CONSUMER_WORKERS``. Returns
    the service, for callers that want to call it directly.
    """
    enricher = enricher or ProfileEnricher(sessions, outbox, settings, graph)
    service = InboundService(
        sessions,
        outbox,
        on_new_contact=enricher.schedule_new,
        profile_lease=enricher.lease,
        app_id=settings.meta_app_id,
        max_transactions=settings.inbound_transactions,
        max_items_per_transaction=settings.consumer_workers,
    )
    enricher.yield_to(lambda: service.backlogged)
    subscribers.register(
        bus, service, durable=durable, policy=policy, max_workers=max_workers or settings.consumer_workers
    )
    return service


@dataclass(frozen=True)
class Outbound:
    """The reply side registered on a bus: the sender and the command handlers."""

    sender: Sender
    commands: Commands


def register_outbound(
    bus: ServiceBus,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    settings: CrmSettings,
    graph: GraphClient,
    *,
    redis: Redis | None = None,
    durable_prefix: str = "",
    policy: RetryPolicy | None = None,
    max_workers: int | None = None,
) -> Outbound:
    """Register the sender (``crm.outbound.send_requested``) and the consumers of
    ``crm.cmd.send_message`` and ``crm.cmd.assign_deal`` on ``bus`` (start the bus afterwards).

    ``redis`` shares each page's Send API rate limit across replicas (without it, or while
    it is down, each replica keeps its own). ``durable_prefix`` is prepended to the durable
    names (tests give each run its own). ``max_workers`` defaults to ``SEND_WORKERS`` for
    the sender. ``policy`` covers failures other than Meta's throttling (the database
    down...); the sender's retries of throttling are bounded by ``SEND_MAX_ATTEMPTS``.
    """
    sender = Sender(sessions, outbox, settings, graph, SendRateLimiter(redis))
    commands = Commands(outbox, settings)
    base = policy or RetryPolicy()
    # Throttled sends come back as delayed redeliveries of the same message: leave room
    # for all of them under JetStream's max_deliver, on top of the ordinary retries.
    sender_policy = RetryPolicy(
        max_deliveries=max(base.max_deliveries, settings.send_max_attempts + 2), backoff=base.backoff
    )
    outbound_subscribers.register_sender(
        bus,
        sender,
        durable=durable_prefix + outbound_subscribers.SENDER_DURABLE,
        policy=sender_policy,
        max_workers=max_workers or settings.send_workers,
    )
    outbound_subscribers.register_commands(
        bus,
        commands,
        send_message_durable=durable_prefix + outbound_subscribers.SEND_MESSAGE_DURABLE,
        assign_deal_durable=durable_prefix + outbound_subscribers.ASSIGN_DEAL_DURABLE,
        policy=policy,
    )
    return Outbound(sender, commands)


def register_analyses(
    bus: ServiceBus,
    outbox: Outbox,
    *,
    durable_prefix: str = "",
    policy: RetryPolicy | None = None,
    max_workers: int = 4,
) -> AnalysisService:
    """Register the consumer of the AI service's results (``ai.analysis.>``) on ``bus``
    (start the bus afterwards): analyses fill the deals' AI fields, failures the AI gives
    up on go to the system log. ``durable_prefix`` is prepended to the durable name (tests
    give each run its own). Returns the service, for callers that want to call it directly.
    """
    service = AnalysisService(outbox)
    analyses_subscribers.register(
        bus,
        service,
        durable=durable_prefix + analyses_subscribers.DURABLE,
        policy=policy,
        max_workers=max_workers,
    )
    return service


def register_jobs(
    bus: ServiceBus,
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    settings: CrmSettings,
    *,
    graph: GraphClient | None = None,
    durable_prefix: str = "",
    policy: RetryPolicy | None = None,
) -> ScheduledWork:
    """Register the consumers of the scheduler's stream on ``bus`` (start the bus
    afterwards): crm's jobs run on their ticks (SLA check, due tasks, daily digest, channel
    health, and with ``graph`` the Meta backfill) and report their outcome, as does the
    daily ``retention.crm``; the jobs' announced state is kept for ``/api/jobs``."""
    backfill = MetaBackfill(sessions, graph, bus.publisher, settings) if graph is not None else None
    work = ScheduledWork(outbox, settings, backfill=backfill)
    jobs_subscribers.register(bus, sessions, work, durable_prefix=durable_prefix, policy=policy)
    # The daily retention.crm, on its own durable consumer (a long run holds no other tick back).
    register_retention(
        bus, crm_retention(sessions, outbox, settings), durable=durable_prefix + RETENTION_DURABLE, policy=policy
    )
    return work


async def run_profile_sweeper(
    sessions: async_sessionmaker[AsyncSession],
    outbox: Outbox,
    settings: CrmSettings,
    graph: GraphClient,
    *,
    interval: float = 30.0,
    enricher: ProfileEnricher | None = None,
) -> None:
    """Forever: fetch the profiles still pending (missed, throttled, or from before a restart).

    Run it as a background task next to the bus (pass the consumer's ``enricher`` to
    share its concurrency limit); cancelling it lets in-flight fetches finish briefly.
    """
    enricher = enricher or ProfileEnricher(sessions, outbox, settings, graph)
    try:
        await enricher.run(interval)
    finally:
        await enricher.aclose()

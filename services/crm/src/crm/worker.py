"""What crm's message-consuming side needs, wired for the process composition root."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.config import CrmSettings
from crm.graph import GraphClient
from crm.inbound import subscribers
from crm.inbound.service import InboundService
from crm.outbox import Outbox
from crm.profiles import ProfileEnricher
from jggl_common.bus import RetryPolicy, ServiceBus

__all__ = ["register_inbound", "run_profile_sweeper"]


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
    enricher = enricher or ProfileEnricher(sessions, settings, graph)
    service = InboundService(sessions, outbox, on_new_contact=enricher.schedule)
    subscribers.register(
        bus, service, durable=durable, policy=policy, max_workers=max_workers or settings.consumer_workers
    )
    return service


async def run_profile_sweeper(
    sessions: async_sessionmaker[AsyncSession],
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
    enricher = enricher or ProfileEnricher(sessions, settings, graph)
    try:
        await enricher.run(interval)
    finally:
        await enricher.aclose()

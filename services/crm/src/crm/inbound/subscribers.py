"""The durable JetStream consumer of ``ingest.meta.>``: decode, hand to the service, return.

Acknowledgement is the bus's job: it acks after the handler returns (so after the
commit) and retries, then dead-letters, a handler that raises.
"""

from __future__ import annotations

from typing import Any

from crm.inbound.service import InboundService
from jggl_common.bus import RetryPolicy, ServiceBus
from jggl_common.contracts import MetaItemReceived
from jggl_common.streams import INGEST

__all__ = ["DURABLE", "SUBJECT", "register"]

DURABLE = "crm-inbound"
SUBJECT = "ingest.meta.>"


def register(
    bus: ServiceBus,
    service: InboundService,
    *,
    durable: str = DURABLE,
    policy: RetryPolicy | None = None,
    max_workers: int = 8,
) -> None:
    """Register the Meta item handler on ``bus`` as the durable consumer ``durable``."""

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=durable, stream=INGEST, subject=SUBJECT, policy=policy, max_workers=max_workers
    )
    async def on_meta_item(body: dict[str, Any]) -> None:
        # Validated here rather than by FastStream, so a malformed event fails inside the
        # bus's retry/DLQ policy instead of being dropped by the framework.
        await service.handle(MetaItemReceived.model_validate(body))

"""The durable consumer of crm's message events (``crm.message.>``)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from jggl_common.bus import PermanentFailure, RetryPolicy, ServiceBus
from jggl_common.contracts import MessageReceived, MessageSent
from jggl_common.streams import CRM

from .service import TranscriptProjection

__all__ = ["DURABLE", "register"]

DURABLE = "ai-transcripts"
_CONTRACTS: dict[str, type[MessageReceived] | type[MessageSent]] = {
    MessageReceived.subject: MessageReceived,
    MessageSent.subject: MessageSent,
}


def register(
    bus: ServiceBus,
    projection: TranscriptProjection,
    *,
    durable: str = DURABLE,
    policy: RetryPolicy | None = None,
    max_workers: int = 8,
) -> None:
    """Register the transcript projection as the durable consumer ``durable``.

    Each message is one statement; more handlers than the pool's connections (which the
    analyses share) would only queue for them.
    """

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=durable, stream=CRM, subject="crm.message.>", policy=policy, max_workers=max_workers
    )
    async def on_message_event(body: dict[str, Any]) -> None:
        contract = _CONTRACTS.get(str(body.get("type")) if isinstance(body, dict) else "")
        if contract is None:
            return  # crm.message.failed and future kinds: not part of the conversation
        try:
            event = contract.model_validate(body)
        except ValidationError as exc:
            raise PermanentFailure(f"malformed {contract.subject}: {exc}") from exc
        await projection.handle(event)

"""The durable consumer of the ``DLQ`` stream: every dead letter becomes a system log entry.

Idempotent by the dead letter's id, so redeliveries and replicas sharing the consumer
record each one once. Something on ``dlq.>`` that is not a dead letter is recorded too
(by its stream position), rather than retried until it is itself dead-lettered.
"""

from __future__ import annotations

from typing import Annotated, Any

from faststream import Context
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.bus import RetryPolicy, ServiceBus
from jggl_common.contracts import DeadLetter
from jggl_common.db import session_scope
from jggl_common.streams import DLQ

from .service import record_dead_letter, record_integration_failure

__all__ = ["DURABLE", "SUBJECT", "register_system_log"]

DURABLE = "crm-system-log"
SUBJECT = "dlq.>"


def register_system_log(
    bus: ServiceBus,
    sessions: async_sessionmaker[AsyncSession],
    *,
    durable: str = DURABLE,
    subject: str = SUBJECT,
    policy: RetryPolicy | None = None,
) -> None:
    """Register the consumer of dead letters on ``bus`` (start the bus afterwards)."""

    @bus.consumer(durable=durable, stream=DLQ, subject=subject, policy=policy, max_workers=4)  # type: ignore[untyped-decorator]
    async def on_dead_letter(body: Any, message: Annotated[Any, Context("message")]) -> None:
        try:
            letter = DeadLetter.model_validate(body)
        except ValidationError as exc:
            raw = message.raw_message
            position = f"{raw.metadata.stream}:{raw.metadata.sequence.stream}"
            async with session_scope(sessions) as session:
                await record_integration_failure(
                    session,
                    "dlq",
                    f"unreadable dead letter on {raw.subject}: {exc.error_count()} validation errors",
                    {"payload": raw.data.decode("utf-8", "replace")[:8000]},
                    dedupe_key=f"dlq-raw:{position}",
                )
            return
        async with session_scope(sessions) as session:
            await record_dead_letter(session, letter)

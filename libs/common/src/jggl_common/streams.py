"""The JetStream streams of the system and the helpers that make them exist.

Stream and subject names are part of the contract (DESIGN §2). Every limit is set
explicitly, the duplicate window included: JetStream's default of two minutes is an
accident, not a decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

__all__ = [
    "AI",
    "ALL_STREAMS",
    "CRM",
    "DLQ",
    "INGEST",
    "NOTIFIER",
    "SCHEDULER",
    "StreamSpec",
    "ensure_streams",
]

DAY = 24 * 3600.0


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A stream as the system declares it."""

    name: str
    subjects: tuple[str, ...]
    max_age_seconds: float
    duplicate_window_seconds: float
    description: str
    max_bytes: int = -1

    def config(self, replicas: int = 1) -> StreamConfig:
        """The nats-py configuration of this stream, stored on ``replicas`` servers."""
        return StreamConfig(
            name=self.name,
            description=self.description,
            subjects=list(self.subjects),
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age_seconds,
            max_bytes=self.max_bytes,
            duplicate_window=self.duplicate_window_seconds,
            num_replicas=replicas,
        )


INGEST = StreamSpec(
    name="INGEST",
    subjects=("ingest.>",),
    max_age_seconds=7 * DAY,
    duplicate_window_seconds=15 * 60,
    description="Raw Meta and Telegram webhook items, one per message; replayable for 7 days",
)
CRM = StreamSpec(
    name="CRM",
    subjects=("crm.>",),
    max_age_seconds=7 * DAY,
    duplicate_window_seconds=15 * 60,
    description="CRM domain events and commands to crm",
)
AI = StreamSpec(
    name="AI",
    subjects=("ai.>",),
    max_age_seconds=7 * DAY,
    duplicate_window_seconds=15 * 60,
    description="AI analysis results",
)
SCHEDULER = StreamSpec(
    name="SCHEDULER",
    subjects=("scheduler.>",),
    max_age_seconds=1 * DAY,
    duplicate_window_seconds=60 * 60,
    description="Scheduler ticks; message id <job>:<slot> keeps one tick per slot",
)
NOTIFIER = StreamSpec(
    name="NOTIFIER",
    subjects=("notifier.>",),
    max_age_seconds=7 * DAY,
    duplicate_window_seconds=15 * 60,
    description="The notifier's own events: the outcomes of its jobs (notifier.job.finished)",
)
DLQ = StreamSpec(
    name="DLQ",
    subjects=("dlq.>",),
    max_age_seconds=30 * DAY,
    duplicate_window_seconds=15 * 60,
    description="Messages a consumer gave up on, with the original subject, payload, delivery count and error",
)

ALL_STREAMS: tuple[StreamSpec, ...] = (INGEST, CRM, AI, NOTIFIER, SCHEDULER, DLQ)


async def ensure_streams(
    js: JetStreamContext, specs: tuple[StreamSpec, ...] = ALL_STREAMS, *, replicas: int | None = None
) -> None:
    """Create each stream, or bring an existing one to the declared configuration.

    ``replicas`` (``NATS_STREAM_REPLICAS``) sets how many servers store each stream; when
    it is not given, an existing stream keeps its count, so a process started without the
    setting never shrinks a clustered stream back to one copy.

    A stream already as declared is left alone: on a broker with per-service users only
    crm may create or update streams (deploy/nats/auth.conf), every other service only
    reads their configuration.
    """
    for spec in specs:
        try:
            info = await js.stream_info(spec.name)
        except NotFoundError:
            await js.add_stream(spec.config(replicas or 1))
        else:
            wanted = spec.config(replicas or info.config.num_replicas or 1)
            if not _as_declared(info.config, wanted):
                await js.update_stream(wanted)


def _as_declared(current: StreamConfig, wanted: StreamConfig) -> bool:
    """Whether the server's configuration of a stream already is the declared one."""

    def seconds(value: float | None) -> float:
        return round(value or 0.0, 3)

    return (
        sorted(current.subjects or []) == sorted(wanted.subjects or [])
        and (current.description or "") == (wanted.description or "")
        and current.retention == wanted.retention
        and current.storage == wanted.storage
        and current.discard == wanted.discard
        and seconds(current.max_age) == seconds(wanted.max_age)
        and seconds(current.duplicate_window) == seconds(wanted.duplicate_window)
        and (current.max_bytes or -1) == (wanted.max_bytes or -1)
        and (current.num_replicas or 1) == (wanted.num_replicas or 1)
    )

"""The scheduler's durable consumers: the admins' commands (``scheduler.cmd.>``) and the
outcomes each owner reports (``<owner>.job.finished`` on the owner's stream)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from jggl_common.bus import PermanentFailure, RetryPolicy, ServiceBus
from jggl_common.contracts import JobFinished, RunJobCommand, SetJobEnabledCommand, job_finished_subject
from jggl_common.streams import ALL_STREAMS, SCHEDULER, StreamSpec

from .service import Scheduler

__all__ = ["COMMANDS_DURABLE", "outcomes_durable", "register"]

COMMANDS_DURABLE = "scheduler-commands"
ContractT = TypeVar("ContractT", bound=BaseModel)


def outcomes_durable(owner: str) -> str:
    """The durable consumer of ``<owner>.job.finished``."""
    return f"scheduler-outcomes-{owner}"


def _stream_of(owner: str) -> StreamSpec:
    for spec in ALL_STREAMS:
        if f"{owner}.>" in spec.subjects:
            return spec
    raise ValueError(f"no stream holds {owner}.>: {owner} cannot report job outcomes")


def _parse(contract: type[ContractT], body: Any) -> ContractT:
    try:
        return contract.model_validate(body)
    except ValidationError as exc:
        raise PermanentFailure(f"malformed {contract.__name__}: {exc}") from exc


def register(bus: ServiceBus, scheduler: Scheduler, *, policy: RetryPolicy | None = None) -> None:
    """Register the commands consumer and one outcomes consumer per owner of a job."""

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=COMMANDS_DURABLE, stream=SCHEDULER, subject="scheduler.cmd.>", policy=policy
    )
    async def on_command(body: dict[str, Any]) -> None:
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == RunJobCommand.subject:
            await scheduler.run_now(_parse(RunJobCommand, body))
        elif kind == SetJobEnabledCommand.subject:
            await scheduler.set_enabled(_parse(SetJobEnabledCommand, body))
        else:
            raise PermanentFailure(f"not a scheduler command: type {kind!r}")

    for owner in sorted(scheduler.owners):
        _register_outcomes(bus, scheduler, owner, policy)


def _register_outcomes(bus: ServiceBus, scheduler: Scheduler, owner: str, policy: RetryPolicy | None) -> None:
    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=outcomes_durable(owner), stream=_stream_of(owner), subject=job_finished_subject(owner), policy=policy
    )
    async def on_outcome(body: dict[str, Any]) -> None:
        await scheduler.record_outcome(_parse(JobFinished, body), owner)

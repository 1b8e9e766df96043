"""The durable JetStream consumer of the AI service's results (``ai.analysis.>``).

Payloads are validated here rather than by FastStream, so a malformed one goes to the DLQ
at once (:class:`PermanentFailure`) instead of being dropped by the framework. Other
events on ``ai.analysis.>`` that crm has no use for are acknowledged and skipped.
Acknowledgement is the bus's job, after the handler returns (after the commit).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from jggl_common.bus import PermanentFailure, RetryPolicy, ServiceBus
from jggl_common.contracts import AnalysisCompleted, AnalysisFailed
from jggl_common.logs import get_logger
from jggl_common.streams import AI

from .service import AnalysisService

__all__ = ["DURABLE", "SUBJECT", "register"]

log = get_logger(__name__)

DURABLE = "crm-ai-analyses"
SUBJECT = "ai.analysis.>"


def register(
    bus: ServiceBus,
    service: AnalysisService,
    *,
    durable: str = DURABLE,
    policy: RetryPolicy | None = None,
    max_workers: int = 4,
) -> None:
    """Register the handler of ``ai.analysis.completed`` and ``ai.analysis.failed`` on
    ``bus`` as the durable consumer ``durable`` (start the bus afterwards)."""

    @bus.consumer(  # type: ignore[untyped-decorator]
        durable=durable, stream=AI, subject=SUBJECT, policy=policy, max_workers=max_workers
    )
    async def on_analysis(body: Any) -> None:
        kind = body.get("type") if isinstance(body, dict) else None
        if kind == AnalysisCompleted.subject:
            await service.completed(_parse(AnalysisCompleted, body))
        elif kind == AnalysisFailed.subject:
            await service.failed(_parse(AnalysisFailed, body))
        elif isinstance(kind, str) and kind.startswith("ai.analysis."):
            log.info("AI event crm does not use, skipped", type=kind)
        else:
            raise PermanentFailure(f"not an AI analysis event (type {kind!r})")


_Contract = TypeVar("_Contract", AnalysisCompleted, AnalysisFailed)


def _parse(contract: type[_Contract], body: Any) -> _Contract:
    try:
        return contract.model_validate(body)
    except ValidationError as exc:
        raise PermanentFailure(f"malformed {contract.subject}: {exc}") from exc

"""JSON logging with a correlation id that follows a message across services.

The correlation id lives in a context variable. HTTP entry points take it from the
``X-Correlation-ID`` header (or make one); publishers copy it into the message headers;
consumers restore it before calling the handler. Every log line carries it.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import sys
import uuid
from collections.abc import Mapping
from typing import Any

import structlog

__all__ = [
    "CORRELATION_HEADER",
    "configure_logging",
    "correlation_from_headers",
    "correlation_id",
    "get_logger",
    "new_correlation_id",
    "set_correlation_id",
]

CORRELATION_HEADER = "X-Correlation-ID"

_correlation: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)


_PROCESS_PREFIX = uuid.uuid4().hex[:12]
_sequence = itertools.count(1)


def new_correlation_id() -> str:
    """A fresh correlation id, unique across processes (a random per-process prefix and a counter)."""
    return f"{_PROCESS_PREFIX}{next(_sequence):x}"


def correlation_id() -> str | None:
    """The correlation id of the work in progress, if any."""
    return _correlation.get()


def set_correlation_id(value: str | None) -> contextvars.Token[str | None]:
    """Make ``value`` the current correlation id; returns a token for ``reset``."""
    return _correlation.set(value)


def correlation_from_headers(headers: Mapping[str, str] | None) -> str:
    """The correlation id carried by message or request headers, or a new one."""
    if headers:
        # HTTP header maps are case-insensitive; message header dicts keep the canonical case.
        value = headers.get(CORRELATION_HEADER)
        if value:
            return value[:128]
    return new_correlation_id()


def _add_correlation(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    cid = _correlation.get()
    if cid is not None:
        event.setdefault("correlation_id", cid)
    return event


class _Stdout:
    """Whatever ``sys.stdout`` is at the moment of writing (it may be replaced)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send JSON lines to stdout for ``service`` (structlog and the stdlib alike)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_correlation,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(_Stdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(_Stdout())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access logs at request rate drown everything else; errors still surface.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    """A structlog logger (JSON, with the correlation id)."""
    return structlog.get_logger(name)

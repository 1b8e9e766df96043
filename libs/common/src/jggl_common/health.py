"""``/healthz``, ``/readyz`` and ``/metrics``, the same on every service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from pydantic import BaseModel

__all__ = ["Readiness", "ReadinessCheck", "health_router"]

ReadinessCheck = Callable[[], Awaitable[bool]]
"""An async callable answering whether one dependency is usable right now."""


class Readiness(BaseModel):
    """What ``/readyz`` answers: overall, and each dependency by name."""

    status: Literal["ready", "not ready"]
    checks: dict[str, Literal["ok", "down"]]


def health_router(
    checks: Mapping[str, ReadinessCheck] | None = None,
    *,
    registry: CollectorRegistry = REGISTRY,
    timeout: float = 2.0,
) -> APIRouter:
    """A router with the three operational endpoints.

    ``/healthz`` answers while the process runs; ``/readyz`` runs every check (each bounded
    by ``timeout``) and answers 503 naming the failing ones; ``/metrics`` is Prometheus.
    """
    router = APIRouter(tags=["operations"])
    named = dict(checks or {})

    async def run(check: ReadinessCheck) -> bool:
        try:
            return await asyncio.wait_for(check(), timeout)
        except Exception:
            return False

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Every dependency answers",
        response_model=Readiness,
        responses={503: {"description": "not ready", "model": Readiness}},
    )
    async def readyz() -> JSONResponse:
        results = await asyncio.gather(*(run(check) for check in named.values()))
        status = {name: ("ok" if ok else "down") for name, ok in zip(named, results, strict=True)}
        ready = all(results)
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": status}, 200 if ready else 503)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router

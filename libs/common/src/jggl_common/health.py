"""``/healthz``, ``/readyz`` and ``/metrics``, the same on every service.

Readiness tells apart what a service cannot work without (``checks``: one down and
``/readyz`` answers 503, the pod leaves the load balancer) from what it works around
(``optional``: one down and ``/readyz`` still answers 200, with ``"status": "degraded"``).
Each ``/readyz`` and each ``/metrics`` scrape sets ``jggl_dependency_up{dependency, required}``
to 1 or 0, so a degraded service shows on dashboards and alerts while it keeps serving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel

__all__ = [
    "DEPENDENCY_UP",
    "Readiness",
    "ReadinessCheck",
    "cached",
    "dependencies_up",
    "dependency_gauge",
    "health_router",
]

ReadinessCheck = Callable[[], Awaitable[bool]]
"""An async callable answering whether one dependency is usable right now."""

DEPENDENCY_UP = "jggl_dependency_up"
"""The gauge's name: 1 while a dependency answered the last check, 0 while it did not."""

_GAUGES: dict[CollectorRegistry, Gauge] = {}


class Readiness(BaseModel):
    """What ``/readyz`` answers: overall, and each dependency by name."""

    status: Literal["ready", "degraded", "not ready"]
    checks: dict[str, Literal["ok", "down"]]


def dependency_gauge(registry: CollectorRegistry = REGISTRY) -> Gauge:
    """``jggl_dependency_up`` in ``registry`` (created once per registry, shared by every router)."""
    known = _GAUGES.get(registry)
    if known is not None:
        return known
    gauge = Gauge(
        "jggl_dependency_up",
        "1 while the dependency answered the last readiness check (/readyz or a scrape), 0 while it did not",
        ["dependency", "required"],
        registry=registry,
    )
    _GAUGES[registry] = gauge
    return gauge


def dependencies_up(metrics: str) -> dict[tuple[str, str], float]:
    """``(dependency, required) → 1.0 or 0.0`` as a ``/metrics`` page shows ``jggl_dependency_up``."""
    return {
        (sample.labels["dependency"], sample.labels["required"]): sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == DEPENDENCY_UP
        for sample in family.samples
    }


def cached(check: ReadinessCheck, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> ReadinessCheck:
    """``check``, asked at most once per ``seconds``: a remote API (Telegram, say) is not
    called on every probe. A failure counts as an answer too (it is not retried sooner);
    concurrent probes share one call."""
    answer: dict[str, float | bool] = {"at": float("-inf"), "ok": False}
    lock = asyncio.Lock()

    async def ask() -> bool:
        async with lock:
            if clock() - float(answer["at"]) >= seconds:
                try:
                    ok = bool(await check())
                except Exception:
                    ok = False
                answer.update(at=clock(), ok=ok)
            return bool(answer["ok"])

    return ask


def health_router(
    checks: Mapping[str, ReadinessCheck] | None = None,
    *,
    optional: Mapping[str, ReadinessCheck] | None = None,
    registry: CollectorRegistry = REGISTRY,
    timeout: float = 2.0,
) -> APIRouter:
    """A router with the three operational endpoints.

    ``/healthz`` answers while the process runs. ``/readyz`` runs every check, required
    (``checks``) and ``optional`` alike, each bounded by ``timeout``, and names each
    dependency ``"ok"`` or ``"down"``: a required one down answers 503 ``"not ready"``;
    only optional ones down answers 200 ``"degraded"``; all up answers 200 ``"ready"``.
    ``/metrics`` is Prometheus; it runs the checks too, so ``jggl_dependency_up`` is current.
    """
    router = APIRouter(tags=["operations"])
    required = dict(checks or {})
    extra = dict(optional or {})
    clash = required.keys() & extra.keys()
    if clash:
        raise ValueError(f"a dependency is either required or optional, not both: {sorted(clash)}")
    named: dict[str, tuple[ReadinessCheck, bool]] = {name: (check, True) for name, check in required.items()}
    named.update({name: (check, False) for name, check in extra.items()})
    gauge = dependency_gauge(registry)

    async def run(check: ReadinessCheck) -> bool:
        try:
            return bool(await asyncio.wait_for(check(), timeout))
        except Exception:
            return False

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def check_all() -> dict[str, bool]:
        results = await asyncio.gather(*(run(check) for check, _ in named.values()))
        for (name, (_, is_required)), ok in zip(named.items(), results, strict=True):
            gauge.labels(dependency=name, required="true" if is_required else "false").set(1 if ok else 0)
        return dict(zip(named, results, strict=True))

    @router.get(
        "/readyz",
        summary="Every required dependency answers (optional ones down: degraded)",
        response_model=Readiness,
        responses={503: {"description": "not ready", "model": Readiness}},
    )
    async def readyz() -> JSONResponse:
        results = await check_all()
        status = {name: "ok" if ok else "down" for name, ok in results.items()}
        if not all(ok for name, ok in results.items() if named[name][1]):
            return JSONResponse({"status": "not ready", "checks": status}, 503)
        degraded = not all(results.values())
        return JSONResponse({"status": "degraded" if degraded else "ready", "checks": status}, 200)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        # A scrape refreshes jggl_dependency_up too, so it is current even where nothing probes /readyz.
        await check_all()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router

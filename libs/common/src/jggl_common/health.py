"""``/healthz``, ``/readyz`` and ``/metrics``, the same on every service.

Readiness tells apart what a service cannot work without (``checks``: one down and
``/readyz`` answers 503, the pod leaves the load balancer) from what it works around
(``optional``: one down and ``/readyz`` still answers 200, with ``"status": "degraded"``).
A dependency a deployment may leave out on purpose (no Gemini key, no Telegram bot token)
is named in ``enabled`` too: while it is switched off it is not asked, ``/readyz`` names it
``"disabled"``, and it counts as neither up nor down.

Each ``/readyz`` and each ``/metrics`` scrape sets two gauges, labelled
``{dependency, required}``:

- ``jggl_dependency_up``: 1 or 0 for each dependency that is switched on; a disabled one
  has no sample at all, so ``jggl_dependency_up == 0`` always means a real outage and the
  alerts and panels built on it need no join to leave disabled ones out;
- ``jggl_dependency_enabled``: 1 while the dependency is switched on, 0 while it is
  disabled on purpose (every dependency has it: one that cannot be switched off reads 1),
  so a dashboard shows "disabled" where ``jggl_dependency_up`` has nothing.
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
    "DEPENDENCY_ENABLED",
    "DEPENDENCY_UP",
    "Readiness",
    "ReadinessCheck",
    "SwitchedOn",
    "cached",
    "dependencies_enabled",
    "dependencies_up",
    "dependency_gauge",
    "health_router",
]

ReadinessCheck = Callable[[], Awaitable[bool]]
"""An async callable answering whether one dependency is usable right now."""

SwitchedOn = Callable[[], bool]
"""A callable answering whether a dependency is configured right now (read at each check,
so a live setting switching it on or off shows at once)."""

DEPENDENCY_UP = "jggl_dependency_up"
"""The gauge's name: 1 while a switched-on dependency answered the last check, 0 while it
did not (no sample while it is disabled)."""

DEPENDENCY_ENABLED = "jggl_dependency_enabled"
"""The gauge's name: 1 while a dependency is switched on, 0 while it is disabled on purpose."""

_GAUGES: dict[CollectorRegistry, tuple[Gauge, Gauge]] = {}

_State = Literal["ok", "down", "disabled"]


class Readiness(BaseModel):
    """What ``/readyz`` answers: overall, and each dependency by name."""

    status: Literal["ready", "degraded", "not ready"]
    checks: dict[str, _State]


def _gauges(registry: CollectorRegistry) -> tuple[Gauge, Gauge]:
    known = _GAUGES.get(registry)
    if known is not None:
        return known
    up = Gauge(
        "jggl_dependency_up",
        "1 while the dependency answered the last readiness check (/readyz or a scrape), 0 while it did not; "
        "no sample while it is disabled on purpose",
        ["dependency", "required"],
        registry=registry,
    )
    enabled = Gauge(
        "jggl_dependency_enabled",
        "1 while the dependency is configured, 0 while it is disabled on purpose (then it is not checked)",
        ["dependency", "required"],
        registry=registry,
    )
    _GAUGES[registry] = (up, enabled)
    return up, enabled


def dependency_gauge(registry: CollectorRegistry = REGISTRY) -> Gauge:
    """``jggl_dependency_up`` in ``registry`` (created once per registry, shared by every router)."""
    return _gauges(registry)[0]


def _samples(metrics: str, name: str) -> dict[tuple[str, str], float]:
    return {
        (sample.labels["dependency"], sample.labels["required"]): sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == name
        for sample in family.samples
    }


def dependencies_up(metrics: str) -> dict[tuple[str, str], float]:
    """``(dependency, required) → 1.0 or 0.0`` as a ``/metrics`` page shows ``jggl_dependency_up``
    (a disabled dependency is absent)."""
    return _samples(metrics, DEPENDENCY_UP)


def dependencies_enabled(metrics: str) -> dict[tuple[str, str], float]:
    """``(dependency, required) → 1.0 or 0.0`` as a ``/metrics`` page shows ``jggl_dependency_enabled``."""
    return _samples(metrics, DEPENDENCY_ENABLED)


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
    enabled: Mapping[str, SwitchedOn] | None = None,
    registry: CollectorRegistry = REGISTRY,
    timeout: float = 2.0,
) -> APIRouter:
    """A router with the three operational endpoints.

    ``/readyz`` runs every check, required (``checks``) and ``optional`` alike, each bounded
    by ``timeout``, and names each dependency ``"ok"``, ``"down"`` or ``"disabled"``: a
    required one down answers 503 ``"not ready"``; only optional ones down answers 200
    ``"degraded"``; otherwise 200 ``"ready"``. A dependency named in ``enabled`` is asked
    only while its callable answers True; while it answers False the dependency is
    ``"disabled"`` (deliberately not configured), which leaves the status as it is. A
    callable that raises counts as switched on (the check then says whether it works).
    ``/healthz`` answers while the process runs. ``/metrics`` is Prometheus; it runs the
    checks too, so ``jggl_dependency_up`` and ``jggl_dependency_enabled`` are current.
    """
    router = APIRouter(tags=["operations"])
    required = dict(checks or {})
    extra = dict(optional or {})
    switches = dict(enabled or {})
    clash = required.keys() & extra.keys()
    if clash:
        raise ValueError(f"a dependency is either required or optional, not both: {sorted(clash)}")
    unknown = switches.keys() - required.keys() - extra.keys()
    if unknown:
        raise ValueError(f"enabled names dependencies that are neither required nor optional: {sorted(unknown)}")
    named: dict[str, tuple[ReadinessCheck, bool]] = {name: (check, True) for name, check in required.items()}
    named.update({name: (check, False) for name, check in extra.items()})
    up_gauge, enabled_gauge = _gauges(registry)

    def switched_on(name: str) -> bool:
        switch = switches.get(name)
        if switch is None:
            return True
        try:
            return bool(switch())
        except Exception:
            return True

    async def run(name: str, check: ReadinessCheck) -> _State:
        if not switched_on(name):
            return "disabled"
        try:
            return "ok" if await asyncio.wait_for(check(), timeout) else "down"
        except Exception:
            return "down"

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def check_all() -> dict[str, _State]:
        states = await asyncio.gather(*(run(name, check) for name, (check, _) in named.items()))
        for (name, (_, is_required)), state in zip(named.items(), states, strict=True):
            labels = (name, "true" if is_required else "false")
            enabled_gauge.labels(*labels).set(0 if state == "disabled" else 1)
            if state == "disabled":
                up_gauge.remove(*labels)
            else:
                up_gauge.labels(*labels).set(1 if state == "ok" else 0)
        return dict(zip(named, states, strict=True))

    @router.get(
        "/readyz",
        summary="Every required dependency answers (optional ones down: degraded)",
        response_model=Readiness,
        responses={503: {"description": "not ready", "model": Readiness}},
    )
    async def readyz() -> JSONResponse:
        states = await check_all()
        if any(state == "down" and named[name][1] for name, state in states.items()):
            return JSONResponse({"status": "not ready", "checks": states}, 503)
        degraded = "down" in states.values()
        return JSONResponse({"status": "degraded" if degraded else "ready", "checks": states}, 200)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        # A scrape refreshes the dependency gauges too, so they are current even where nothing probes /readyz.
        await check_all()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router

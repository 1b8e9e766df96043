"""``/readyz`` against real sockets: required down → 503, optional down → degraded, one
switched off on purpose → disabled (not down), and the gauges."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from jggl_common.health import ReadinessCheck, cached, dependencies_enabled, dependencies_up, health_router


async def _server() -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # bound then released: nothing listens there


def _tcp(port: int) -> ReadinessCheck:
    async def check() -> bool:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
        await writer.wait_closed()
        return True

    return check


@pytest.fixture
async def ports() -> AsyncIterator[tuple[int, int]]:
    server, up = await _server()
    try:
        yield up, _closed_port()
    finally:
        server.close()
        await server.wait_closed()


async def _get(app: FastAPI, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.get(path)


def _app(
    registry: CollectorRegistry,
    checks: dict[str, ReadinessCheck] | None = None,
    optional: dict[str, ReadinessCheck] | None = None,
    timeout: float = 2.0,
    enabled: dict[str, Callable[[], bool]] | None = None,
) -> FastAPI:
    app = FastAPI()
    app.include_router(health_router(checks, optional=optional, enabled=enabled, registry=registry, timeout=timeout))
    return app


def _gauge(registry: CollectorRegistry, dependency: str, required: str) -> float | None:
    return registry.get_sample_value("jggl_dependency_up", {"dependency": dependency, "required": required})


def _enabled(registry: CollectorRegistry, dependency: str, required: str) -> float | None:
    return registry.get_sample_value("jggl_dependency_enabled", {"dependency": dependency, "required": required})


async def test_everything_up_is_ready_and_every_dependency_reads_one(ports: tuple[int, int]) -> None:
    up, _ = ports
    registry = CollectorRegistry()
    app = _app(registry, checks={"postgres": _tcp(up)}, optional={"redis": _tcp(up)})

    response = await _get(app, "/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}
    assert _gauge(registry, "postgres", "true") == 1
    assert _gauge(registry, "redis", "false") == 1
    assert _enabled(registry, "postgres", "true") == _enabled(registry, "redis", "false") == 1


async def test_an_optional_dependency_down_is_degraded_yet_ready(ports: tuple[int, int]) -> None:
    up, closed = ports
    registry = CollectorRegistry()
    app = _app(registry, checks={"postgres": _tcp(up)}, optional={"redis": _tcp(closed)})

    response = await _get(app, "/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "checks": {"postgres": "ok", "redis": "down"}}
    assert _gauge(registry, "redis", "false") == 0
    metrics = (await _get(app, "/metrics")).text
    assert 'jggl_dependency_up{dependency="redis",required="false"} 0.0' in metrics
    assert dependencies_up(metrics) == {("postgres", "true"): 1.0, ("redis", "false"): 0.0}


async def test_a_required_dependency_down_is_not_ready_whatever_the_optional_ones(ports: tuple[int, int]) -> None:
    up, closed = ports
    registry = CollectorRegistry()
    app = _app(registry, checks={"postgres": _tcp(closed), "nats": _tcp(up)}, optional={"redis": _tcp(up)})

    response = await _get(app, "/readyz")

    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "checks": {"postgres": "down", "nats": "ok", "redis": "ok"}}
    assert _gauge(registry, "postgres", "true") == 0


async def test_the_gauge_follows_a_dependency_coming_back(ports: tuple[int, int]) -> None:
    up, closed = ports
    registry = CollectorRegistry()
    target = {"port": closed}

    async def moving() -> bool:
        return await _tcp(target["port"])()

    app = _app(registry, checks={"nats": moving})
    assert (await _get(app, "/readyz")).status_code == 503
    assert _gauge(registry, "nats", "true") == 0

    target["port"] = up
    assert (await _get(app, "/readyz")).status_code == 200
    assert _gauge(registry, "nats", "true") == 1


async def test_a_check_that_hangs_counts_as_down_within_the_timeout() -> None:
    registry = CollectorRegistry()

    async def hangs() -> bool:
        await asyncio.sleep(30)
        return True

    app = _app(registry, optional={"gemini": hangs}, timeout=0.2)
    response = await asyncio.wait_for(_get(app, "/readyz"), 5)

    assert response.json() == {"status": "degraded", "checks": {"gemini": "down"}}


def test_routers_sharing_a_registry_share_one_gauge_and_a_name_cannot_be_both() -> None:
    registry = CollectorRegistry()
    health_router({"postgres": _tcp(1)}, registry=registry)
    health_router({"postgres": _tcp(1)}, registry=registry)  # a second app in the same process
    with pytest.raises(ValueError, match="either required or optional"):
        health_router({"redis": _tcp(1)}, optional={"redis": _tcp(1)}, registry=registry)
    with pytest.raises(ValueError, match=r"neither required nor optional: \['gemini'\]"):
        health_router({"postgres": _tcp(1)}, enabled={"gemini": lambda: True}, registry=registry)


async def test_no_checks_at_all_is_ready() -> None:
    app = _app(CollectorRegistry())
    response = await _get(app, "/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready", "checks": {}})


async def test_a_cached_check_asks_once_per_period_failures_included(ports: tuple[int, int]) -> None:
    up, closed = ports
    now = [0.0]
    asked: list[int] = []
    target = {"port": closed}

    async def remote() -> bool:
        asked.append(target["port"])
        return await _tcp(target["port"])()

    check = cached(remote, 30.0, clock=lambda: now[0])
    assert [await check() for _ in range(3)] == [False, False, False]
    assert len(asked) == 1
    target["port"] = up
    now[0] = 29.0
    assert await check() is False  # still the answer of t=0
    now[0] = 30.0
    assert await check() is True
    assert asked == [closed, up]


async def test_a_scrape_alone_refreshes_the_gauge(ports: tuple[int, int]) -> None:
    up, closed = ports
    registry = CollectorRegistry()
    app = _app(registry, checks={"postgres": _tcp(up)}, optional={"telegram": _tcp(closed)})

    metrics = (await _get(app, "/metrics")).text  # nothing asked /readyz before

    assert dependencies_up(metrics) == {("postgres", "true"): 1.0, ("telegram", "false"): 0.0}


async def test_a_dependency_switched_off_is_disabled_not_asked_and_the_service_ready(ports: tuple[int, int]) -> None:
    up, _ = ports
    registry = CollectorRegistry()
    asked: list[str] = []

    async def telegram() -> bool:
        asked.append("telegram")
        return False  # it would be down, were it asked

    app = _app(
        registry, checks={"postgres": _tcp(up)}, optional={"telegram": telegram}, enabled={"telegram": lambda: False}
    )

    response = await _get(app, "/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"postgres": "ok", "telegram": "disabled"}}
    assert asked == []
    metrics = (await _get(app, "/metrics")).text
    assert dependencies_up(metrics) == {("postgres", "true"): 1.0}  # no "up" sample: nothing to alert on
    assert dependencies_enabled(metrics) == {("postgres", "true"): 1.0, ("telegram", "false"): 0.0}


async def test_readiness_follows_a_dependency_switched_on_and_off(ports: tuple[int, int]) -> None:
    up, closed = ports
    registry = CollectorRegistry()
    configured = {"gemini": False}
    target = {"port": closed}

    async def gemini() -> bool:
        return await _tcp(target["port"])()

    app = _app(
        registry,
        checks={"postgres": _tcp(up)},
        optional={"gemini": gemini},
        enabled={"gemini": lambda: configured["gemini"]},
    )
    assert (await _get(app, "/readyz")).json()["checks"]["gemini"] == "disabled"

    configured["gemini"] = True  # configured, and unreachable: a real outage
    response = await _get(app, "/readyz")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "degraded", "checks": {"postgres": "ok", "gemini": "down"}},
    )
    assert (_gauge(registry, "gemini", "false"), _enabled(registry, "gemini", "false")) == (0, 1)

    target["port"] = up
    assert (await _get(app, "/readyz")).json() == {"status": "ready", "checks": {"postgres": "ok", "gemini": "ok"}}
    assert _gauge(registry, "gemini", "false") == 1

    configured["gemini"] = False
    assert (await _get(app, "/readyz")).json() == {
        "status": "ready",
        "checks": {"postgres": "ok", "gemini": "disabled"},
    }
    assert (_gauge(registry, "gemini", "false"), _enabled(registry, "gemini", "false")) == (None, 0)
    assert dependencies_up((await _get(app, "/metrics")).text) == {("postgres", "true"): 1.0}


async def test_disabled_ones_hide_no_outage_of_the_others(ports: tuple[int, int]) -> None:
    up, closed = ports
    registry = CollectorRegistry()
    off = {"gemini": lambda: False}
    optional = {"gemini": _tcp(up), "redis": _tcp(closed)}

    degraded = _app(registry, checks={"postgres": _tcp(up)}, optional=optional, enabled=off)
    response = await _get(degraded, "/readyz")
    assert (response.status_code, response.json()) == (
        200,
        {"status": "degraded", "checks": {"postgres": "ok", "gemini": "disabled", "redis": "down"}},
    )

    not_ready = _app(CollectorRegistry(), checks={"postgres": _tcp(closed)}, optional=optional, enabled=off)
    response = await _get(not_ready, "/readyz")
    assert (response.status_code, response.json()["status"]) == (503, "not ready")


async def test_a_switch_that_fails_counts_as_on_and_the_check_decides(ports: tuple[int, int]) -> None:
    _, closed = ports

    def broken() -> bool:
        raise RuntimeError("settings unreadable")

    app = _app(CollectorRegistry(), optional={"telegram": _tcp(closed)}, enabled={"telegram": broken})

    assert (await _get(app, "/readyz")).json() == {"status": "degraded", "checks": {"telegram": "down"}}

"""What the API rate limiter costs a request: the same endpoint with the limiter and without it.

``python bench/api_limit_bench.py`` (from the repository root) starts two crm API processes
on loopback ports over one fresh schema of the test database and the machine's Redis: one
as crm runs (every ``/api`` request checked in Redis, with rates high enough that nothing
is refused) and one with the limiter's middleware taken out. It then sends ``GET /api/me``
with a bearer token (a token check and one primary-key read: a cheap endpoint, so the
limiter's share shows), ``BENCH_RUNS`` (5) rounds of ``BENCH_REQUESTS`` (300) requests to
each, one after another, alternating between the two servers request by request (so the
machine's other load weighs on both alike). It prints each round's median latency per
server, the median of those medians, and the median of the rounds' differences: what the
limiter adds; then the check alone (the limiter's Redis call from this process). Bounded: ``2 * (runs * requests + 50)`` requests in all.

Environment: ``TEST_DATABASE_URL`` / ``BENCH_PG`` (as the tests use), ``BENCH_REDIS_URL``
(``redis://127.0.0.1:6379/13``). ``BENCH_JSON`` appends the figures as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import httpx
from sqlalchemy import text

from jggl_common.db import create_engine, session_factory, session_scope
from jggl_common.testing import TEST_DATABASE_URL, free_port

ROOT = Path(__file__).resolve().parent.parent
DATABASE_URL = os.environ.get("BENCH_PG", TEST_DATABASE_URL)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "300"))
WARMUP = 50
APP_KEY = "YXBpLWxpbWl0LWJlbmNoLWtleS0wMTIzNDU2Nzg5YWI="  # scratch keys for a scratch schema
SIGNING_KEY = "YXBpLWxpbWl0LWJlbmNoLXNpZ25pbmcta2V5LTAxMjM="
PASSWORD = "Bench-Limit-Pass-1"  # noqa: S105
EMAIL = "bench@bench.test"


def _settings(schema: str) -> dict[str, str]:
    return {
        "APP_KEY": APP_KEY,
        "AUTH_SIGNING_KEY": SIGNING_KEY,
        "APP_URL": "http://127.0.0.1",
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "DB_SCHEMA": schema,
        "NATS_URL": "nats://127.0.0.1:4222",
        "API_RATE_PER_MINUTE": str(10**7),
        "API_RATE_BURST": str(10**7),
        "LOG_LEVEL": "WARNING",
    }


def serve(schema: str, port: int, limited: bool) -> None:
    """One crm API process (``limited``: as crm runs; else without the rate limiter)."""
    import uvicorn

    from crm.api import create_app
    from crm.config import CrmSettings
    from crm.limits import ApiRateLimits

    app = create_app(CrmSettings(_env_file=None))
    if not limited:
        app.user_middleware = [entry for entry in app.user_middleware if cast(object, entry.cls) is not ApiRateLimits]
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def _prepare(schema: str) -> None:
    from crm.auth.passwords import Passwords
    from crm.migrate import upgrade
    from crm.models import User

    engine = create_engine(DATABASE_URL, schema, pool_size=2)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await upgrade(engine, schema)
        async with session_scope(session_factory(engine)) as session:
            password_hash = await Passwords().hash(PASSWORD)
            session.add(User(email=EMAIL, name="Bench", password_hash=password_hash, role="manager", is_active=True))
    finally:
        await engine.dispose()


async def _drop(schema: str) -> None:
    engine = create_engine(DATABASE_URL, schema, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await engine.dispose()


def _wait_ready(client: httpx.Client, deadline: float) -> None:
    while True:
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("crm did not start")
        time.sleep(0.1)


def _round(clients: dict[str, httpx.Client], headers: dict[str, str], count: int, first: str) -> dict[str, float]:
    """Median latency (ms) per server of ``count`` requests to each, sent one after another,
    alternating between the servers request by request (so a change in the machine's load
    weighs on both alike)."""
    order = sorted(clients, key=lambda mode: mode != first)
    latencies: dict[str, list[float]] = {mode: [] for mode in clients}
    for _ in range(count):
        for mode in order:
            started = time.perf_counter()
            response = clients[mode].get("/api/me", headers=headers)
            latencies[mode].append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise SystemExit(f"GET /api/me answered {response.status_code}: {response.text[:200]}")
    return {mode: statistics.median(values) for mode, values in latencies.items()}


async def _check_alone(count: int) -> float:
    """Median time (µs) of the limiter's check itself (one Redis script call), ``count`` times in a row."""
    from redis.asyncio import Redis

    from crm.limits import Rate, RateLimiter

    redis = Redis.from_url(REDIS_URL)
    limiter = RateLimiter(redis, prefix=f"bench:api_limit:{secrets.token_hex(4)}")
    rate = Rate(10**7, 10**7)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            if await limiter.wait_seconds("token:1", rate) is not None:
                raise SystemExit("the limiter refused a request it should not")
            times.append((time.perf_counter() - started) * 1_000_000)
        await redis.delete(f"{limiter.prefix}:token:1")
    finally:
        await redis.aclose()
    return statistics.median(times)


def main() -> None:
    schema = f"bench_limit_{secrets.token_hex(4)}"
    asyncio.run(_prepare(schema))
    env = {**os.environ, **_settings(schema)}
    ports = {"on": free_port(), "off": free_port()}
    servers = {
        mode: subprocess.Popen(
            [sys.executable, __file__, "serve", schema, str(port), mode],
            env=env,
            cwd=ROOT,
        )
        for mode, port in ports.items()
    }
    try:
        clients = {mode: httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) for mode, port in ports.items()}
        deadline = time.monotonic() + 60
        for client in clients.values():
            _wait_ready(client, deadline)
        login = clients["on"].post("/api/auth/login", json={"email": EMAIL, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.raise_for_status().json()['access_token']}"}
        _round(clients, headers, WARMUP, "on")
        medians: dict[str, list[float]] = {"on": [], "off": []}
        for run in range(RUNS):
            for mode, median in _round(clients, headers, REQUESTS, "on" if run % 2 == 0 else "off").items():
                medians[mode].append(median)
        for client in clients.values():
            client.close()
    finally:
        for server in servers.values():
            server.terminate()
            server.wait(10)
        asyncio.run(_drop(schema))
    on, off = statistics.median(medians["on"]), statistics.median(medians["off"])
    added = statistics.median(with_ - without for with_, without in zip(medians["on"], medians["off"], strict=True))
    alone = statistics.median(asyncio.run(_check_alone(REQUESTS)) for _ in range(RUNS))
    print(f"GET /api/me, {RUNS} rounds of {REQUESTS} sequential requests each, loopback, load {os.getloadavg()[0]:.1f}")
    print("  round medians with the limiter (ms):    " + " ".join(f"{value:.3f}" for value in medians["on"]))
    print("  round medians without the limiter (ms): " + " ".join(f"{value:.3f}" for value in medians["off"]))
    print(f"  median of the round medians: with {on:.3f} ms, without {off:.3f} ms")
    print(f"  the limiter adds {added * 1000:.0f} µs per request (median of the rounds' differences)")
    print(f"  the check alone (one Redis script call, in this process): median {alone:.0f} µs")
    if target := os.environ.get("BENCH_JSON"):
        with open(target, "a") as out:
            figures = {"bench": "api_limit", "with_ms": on, "without_ms": off, "added_ms": added, "check_us": alone}
            out.write(json.dumps(figures) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "on")
    else:
        main()

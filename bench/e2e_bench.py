"""End to end: signed webhooks at a sustained rate through ingest and crm, to the deal
and message being visible through the managers' API.

Starts ingest and crm (API + consumer) on free ports against a scratch database, sends
new-customer text messages open-loop at each rate of ``E2E_RATES`` for ``E2E_SECONDS``,
then reports for each rate: sent, accepted (200), stored (messages in crm), lost, the
profiles fetched by then, and the latency from the webhook's send to the message being
committed in crm (p50, p99), which is when the API shows it. A sample of deals is fetched
through the API to confirm. Every new customer's profile is fetched, as in production,
from the sandbox's Graph API running in a process of its own (its CPU is Meta's in real
life, but here it shares the machine).

A warm-up (100 messages/s for ``E2E_WARMUP_SECONDS``) comes first and is not reported.

Environment: E2E_RATES ("500,700,800"), E2E_SECONDS (60), E2E_CONNECTIONS (64),
E2E_WARMUP_SECONDS (10).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
import uvloop

from jggl_common.testing import start_nats_server
from jggl_sandbox.meta_webhooks import Customer, signed, webhook

SECRET = "e2e-app-secret"  # noqa: S105 - a throwaway secret of the benchmark
RATES = [int(r) for r in os.environ.get("E2E_RATES", "500,700,800").split(",")]
SECONDS = float(os.environ.get("E2E_SECONDS", "60"))
CONNECTIONS = int(os.environ.get("E2E_CONNECTIONS", "64"))
WARMUP_RATE, WARMUP_SECONDS = 100, float(os.environ.get("E2E_WARMUP_SECONDS", "10"))
PG = os.environ.get("E2E_PG", "postgresql://postgres@127.0.0.1:5432")
DB = "jggl_e2e_bench"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60, path: str = "/readyz") -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{url} exited with {proc.returncode}")
            try:
                if (await client.get(url + path)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise SystemExit(f"{url} not ready after {timeout}s")


def _prepare(port: int, rate: int, seconds: float, page: str) -> list[tuple[str, bytes]]:
    """Every webhook of a run, signed and framed as HTTP/1.1 before the clock starts, so
    the load generator spends its time sending, not building (it shares the machine)."""
    rng = random.Random(time.time_ns())
    start_ms = int(time.time() * 1000)
    out = []
    for i in range(int(rate * seconds)):
        at_ms = start_ms + int(i * 1000 / rate)
        item = Customer.new("messenger", rng, page_id=page).text(timestamp_ms=at_ms)
        hook = signed(webhook("messenger", page, [item], at_ms), SECRET)
        head = f"POST /webhooks/meta HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(hook.body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in hook.headers.items())
        out.append((item["message"]["mid"], head.encode() + b"\r\n" + hook.body))
    return out


async def _send_at_rate(port: int, rate: int, seconds: float, page: str) -> tuple[dict[str, float], int]:
    """Open-loop: one new customer's first message every 1/rate s over keep-alive
    connections; returns mid -> send time and the number of 200 answers."""
    requests = _prepare(port, rate, seconds, page)
    sent: dict[str, float] = {}
    accepted = 0
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

    async def worker() -> None:
        nonlocal accepted
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (job := await queue.get()) is not None:
                mid, request = job
                sent[mid] = time.time()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"), 0
                )
                await reader.readexactly(length)
                accepted += head[9:12] == b"200"
        finally:
            writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(CONNECTIONS)]
    start = time.perf_counter()
    for i, job in enumerate(requests):
        queue.put_nowait(job)
        delay = start + (i + 1) / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return sent, accepted


async def _stored(conn: asyncpg.Connection, mids: list[str], wait: float = 60) -> dict[str, float]:
    deadline = time.monotonic() + wait
    found: dict[str, float] = {}
    while time.monotonic() < deadline:
        rows = await conn.fetch(
            "SELECT mid, extract(epoch FROM created_at) AS at FROM crm.messages WHERE mid = ANY($1)", mids
        )
        found = {row["mid"]: float(row["at"]) for row in rows}
        if len(found) == len(mids):
            break
        await asyncio.sleep(1)
    return found


async def main() -> None:
    admin = await asyncpg.connect(PG + "/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{DB}"')
    await admin.close()
    env = dict(os.environ)
    env.update(
        APP_KEY=base64.b64encode(os.urandom(32)).decode(),
        DATABASE_URL=f"{PG}/{DB}",
        REDIS_URL="redis://127.0.0.1:6379/12",
        APP_URL="http://localhost",
        META_APP_SECRET=SECRET,
        RATE_LIMIT_PER_MINUTE="100000000",
        META_ACCESS_TOKEN="bench-page-token",  # noqa: S106 - the sandbox's Graph API takes any token
        ADMIN_EMAIL="bench@jggl.local",
        ADMIN_PASSWORD="bench-password-1",  # noqa: S106 - a scratch database of the benchmark
        LOG_LEVEL=os.environ.get("E2E_LOG_LEVEL", "WARNING"),
        HOST="127.0.0.1",
    )
    # A NATS server of the benchmark's own: a fresh stream, no backlog from other work.
    nats_proc, nats_port = start_nats_server(Path(tempfile.mkdtemp(prefix="e2e-nats-")))
    env["NATS_URL"] = f"nats://127.0.0.1:{nats_port}"
    subprocess.run([sys.executable, "-m", "crm", "migrate"], env=env, check=True)
    ingest_port, crm_port, graph_port = _free_port(), _free_port(), _free_port()
    # Every new customer's profile is fetched, from the sandbox's Graph API in a process of its own.
    env["META_GRAPH_URL"] = f"http://127.0.0.1:{graph_port}"
    procs = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "--factory", "jggl_sandbox.graph_fake:create_app"),
                *("--host", "127.0.0.1", "--port", str(graph_port), "--log-level", "warning", "--no-access-log"),
            ]
        ),
        subprocess.Popen([sys.executable, "-m", "ingest"], env={**env, "PORT": str(ingest_port)}),
        subprocess.Popen([sys.executable, "-m", "crm"], env={**env, "PORT": str(crm_port)}),
    ]
    results = []
    try:
        await _wait_ready(f"http://127.0.0.1:{graph_port}", procs[0], path="/_fake/requests")
        await _wait_ready(f"http://127.0.0.1:{ingest_port}", procs[1])
        await _wait_ready(f"http://127.0.0.1:{crm_port}", procs[2])
        conn = await asyncpg.connect(f"{PG}/{DB}")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{crm_port}") as api:
            token = ""
            for _ in range(30):
                login = await api.post(
                    "/api/auth/login", json={"email": "bench@jggl.local", "password": "bench-password-1"}
                )
                if login.status_code == 200:
                    token = login.json()["access_token"]
                    break
                await asyncio.sleep(0.5)
            # Warm up (connections opened, statements prepared) and let the backlog drain,
            # so each rate measures the steady state.
            warm, _ = await _send_at_rate(
                ingest_port, WARMUP_RATE, WARMUP_SECONDS, "76" + str(random.randrange(10**12))
            )
            await _stored(conn, list(warm))
            print(f"warm-up: {len(warm)} messages at {WARMUP_RATE}/s", file=sys.stderr, flush=True)
            for rate in RATES:
                page = "77" + str(random.randrange(10**12))
                sent, accepted = await _send_at_rate(ingest_port, rate, SECONDS, page)
                stored = await _stored(conn, list(sent))
                latencies = sorted((stored[mid] - sent[mid]) * 1000 for mid in stored)
                # By send time: a growing backlog shows as the last tenth waiting longer than the first.
                in_order = [(stored[mid] - sent[mid]) * 1000 for mid in sorted(stored, key=sent.__getitem__)]
                tenth = max(1, len(in_order) // 10)
                profiles = await conn.fetchval(
                    "SELECT count(*) FROM crm.contacts c JOIN crm.channels ch ON ch.id = c.channel_id"
                    " WHERE ch.external_id = $1 AND c.profile_status = 'fetched'",
                    page,
                )
                deals = await api.get("/api/deals", params={"limit": 5}, headers={"Authorization": f"Bearer {token}"})
                row = {
                    "rate": rate,
                    "sent": len(sent),
                    "accepted": accepted,
                    "stored": len(stored),
                    "lost": len(sent) - len(stored),
                    "profiles_fetched": profiles,
                    "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
                    "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
                    "p50_first_tenth_ms": round(statistics.median(in_order[:tenth]), 1) if in_order else None,
                    "p50_last_tenth_ms": round(statistics.median(in_order[-tenth:]), 1) if in_order else None,
                    "api_deals_ok": deals.status_code == 200 and len(deals.json()["items"]) > 0,
                }
                results.append(row)
                print(row, file=sys.stderr, flush=True)
        await conn.close()
    finally:
        # crm first, the Graph fake last: profile fetches in flight at the stop still get answers.
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(20)
        nats_proc.terminate()
        nats_proc.wait(10)
    print(f"\nend to end (webhook sent -> message committed in crm), {SECONDS:.0f} s per rate")
    print(f"{'rate/s':>7} {'sent':>7} {'200':>7} {'stored':>7} {'lost':>5} {'profiles':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        print(
            f"{r['rate']:>7} {r['sent']:>7} {r['accepted']:>7} {r['stored']:>7} {r['lost']:>5}"
            f" {r['profiles_fetched']:>8} {r['p50_ms']!s:>8} {r['p99_ms']!s:>8}"
        )


if __name__ == "__main__":
    uvloop.run(main())

"""End to end: signed webhooks at a sustained rate through ingest and crm, to what crm
stores being committed.

Starts ingest, crm (``E2E_CRM_REPLICAS`` processes sharing the durable consumer, each with
its API) and the sandbox's Graph API on free ports against a scratch database, a NATS
server and a Redis of the benchmark's own, then sends webhooks open-loop, one item per
webhook, at each rate of ``E2E_RATES`` for ``E2E_SECONDS``.

Two mixes (``E2E_MIX``):

``real`` (the default) models a page's traffic. Customers write 1–8 messages each;
``E2E_BURST_SHARE`` of them in a quick burst (0.3–3 s apart), the others spread over the
run (5–30 s apart). ``E2E_NEW_SHARE`` of the customers are new; the others already have
a conversation: before the measured run each wrote a first message 1–48 hours ago (by
Meta's timestamps in the payload) and the page answered from Meta's inbox within the
hour, so their messages in the run come hours after their last one. During the run the
page answers ``E2E_ECHO_SHARE`` of the customers from Meta's inbox (an echo, stored as an
outgoing message), ``E2E_READ_SHARE`` of those with a page message read it (a read
receipt) and ``E2E_REACTION_SHARE`` react to it. Events are ordered per customer and sent
at the rate, with Meta timestamps equal to their send time.

``new``: every webhook is a new customer's first message (the most expensive single
item: contact, conversation, deal, message, a profile fetch).

For each rate it reports: sent, accepted (200), stored, lost (by kind: a customer message
or an echo is stored when its row in ``messages`` exists, a read when its receipt is in
``receipts``, a reaction when the reacted message holds the customer's reaction), the
latency from the webhook's send to the message's row being committed in crm (customer
messages and echoes; p50, p99), the median latency of each tenth of the run by send time
(a growing backlog shows as later tenths waiting longer), and the CPU each process used
while the rate was being sent (share of one core: ingest, each crm replica, the Graph
fake, nats-server, redis-server, PostgreSQL's backends serving the scratch database, the
load generator). Every new customer's profile is fetched, as in production, from the Graph
fake running in a process of its own (its CPU is Meta's in real life, but here it
shares the machine).

A warm-up (the same mix at 100 events/s for ``E2E_WARMUP_SECONDS``) comes first and is
not reported; each rate's history (returning customers) is sent and stored before the
rate's clock starts, and is not reported either. Each rate starts once crm is idle (no
profile waiting to be fetched).

Environment: E2E_MIX (real | new), E2E_RATES ("200,350,500"), E2E_SECONDS (60),
E2E_CONNECTIONS (64), E2E_WARMUP_SECONDS (10), E2E_CRM_REPLICAS (1), E2E_NEW_SHARE (0.2),
E2E_BURST_SHARE (0.5), E2E_ECHO_SHARE (0.1), E2E_READ_SHARE (0.2), E2E_REACTION_SHARE
(0.1), E2E_SEED_RATE (history items/s, 500), E2E_DRAIN_SECONDS (how long to wait for the
last items to be stored, 120), E2E_SEED (random seed; default from the clock; runs with
the same seed send the same items, and each stores them all: its Redis, where ingest
remembers what it stored, is new, and the warm-up and each rate draw from streams of
their own),
E2E_NATS_AUTH (1: the NATS server runs with deploy/nats/auth.conf and ingest and crm connect
as their own users, as deployed; default 0, no users), E2E_DB (the scratch database, default
jggl_e2e_bench_<pid>, dropped at the end).
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
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import uvloop

from jggl_common.live_settings import LiveSettings
from jggl_common.streams import ensure_streams
from jggl_common.testing import NATS_AUTH_CONFIG, start_nats_server, start_redis_server
from jggl_sandbox.meta_webhooks import Customer, JSONObject, signed, webhook
from jggl_sandbox.nats_credentials import new_credentials

SECRET = "e2e-app-secret"  # noqa: S105 - a throwaway secret of the benchmark
MIX = os.environ.get("E2E_MIX", "real")
RATES = [int(r) for r in os.environ.get("E2E_RATES", "200,350,500").split(",")]
SECONDS = float(os.environ.get("E2E_SECONDS", "60"))
CONNECTIONS = int(os.environ.get("E2E_CONNECTIONS", "64"))
WARMUP_RATE, WARMUP_SECONDS = 100, float(os.environ.get("E2E_WARMUP_SECONDS", "10"))
REPLICAS = int(os.environ.get("E2E_CRM_REPLICAS", "1"))
NEW_SHARE = float(os.environ.get("E2E_NEW_SHARE", "0.2"))
BURST_SHARE = float(os.environ.get("E2E_BURST_SHARE", "0.5"))
ECHO_SHARE = float(os.environ.get("E2E_ECHO_SHARE", "0.1"))
READ_SHARE = float(os.environ.get("E2E_READ_SHARE", "0.2"))
REACTION_SHARE = float(os.environ.get("E2E_REACTION_SHARE", "0.1"))
SEED_RATE = int(os.environ.get("E2E_SEED_RATE", "500"))
DRAIN_SECONDS = float(os.environ.get("E2E_DRAIN_SECONDS", "120"))
SEED = int(os.environ.get("E2E_SEED", "0"))
NATS_AUTH = os.environ.get("E2E_NATS_AUTH", "0") == "1"
PG = os.environ.get("E2E_PG", "postgresql://postgres@127.0.0.1:5432")
# A scratch database per run (dropped at the end): two runs side by side never share one.
DB = os.environ.get("E2E_DB", f"jggl_e2e_bench_{os.getpid()}")
# Echoes of replies typed in Meta's Page inbox carry this app id (not crm's own app).
META_INBOX_APP_ID = 263902037430900
HOUR_MS = 3_600_000
SEED_ITEMS_PER_WEBHOOK = 5

if MIX not in ("real", "new"):
    raise SystemExit(f"E2E_MIX must be 'real' or 'new', not {MIX!r}")


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


def _frame(port: int, items: list[JSONObject], page: str, at_ms: int) -> bytes:
    """A signed webhook framed as an HTTP/1.1 request, built before the clock starts."""
    hook = signed(webhook("messenger", page, items, at_ms), SECRET)
    head = f"POST /webhooks/meta HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(hook.body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in hook.headers.items())
    return head.encode() + b"\r\n" + hook.body


@dataclass
class Plan:
    """What one run sends and what crm should store for it.

    ``requests`` are (key, framed request) in send order; a key names what the request
    should leave in crm: a message id (a customer message or an echo), ``read:<user>:<ms>``
    (a receipt with that watermark) or ``reaction:<user>:<mid>`` (the customer's reaction
    on message ``mid``).
    """

    requests: list[tuple[str, bytes]] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)
    reads: dict[str, tuple[str, int]] = field(default_factory=dict)
    reactions: dict[str, tuple[str, str]] = field(default_factory=dict)
    seed_first: list[tuple[str, JSONObject]] = field(default_factory=list)
    seed_echoes: list[tuple[str, JSONObject]] = field(default_factory=list)
    customers: int = 0
    new_customers: int = 0
    # Builds ``requests`` with Meta timestamps from ``start_ms`` (called once crm is idle).
    build: Callable[[int], None] = lambda start_ms: None

    def add(self, port: int, page: str, kind: str, item: JSONObject, at_ms: int, customer: str) -> None:
        if kind == "read":
            key = f"read:{customer}:{item['read']['watermark']}"
            self.reads[key] = (customer, int(item["read"]["watermark"]))
        elif kind == "reaction":
            key = f"reaction:{customer}:{item['reaction']['mid']}"
            self.reactions[key] = (item["reaction"]["mid"], customer)
        else:
            key = item["message"]["mid"]
        self.kinds[key] = kind
        self.requests.append((key, _frame(port, [item], page, at_ms)))


def _plan_new(port: int, rate: int, seconds: float, page: str, rng: random.Random) -> Plan:
    total = int(rate * seconds)
    plan = Plan(customers=total, new_customers=total)

    def build(start_ms: int) -> None:
        for i in range(total):
            at_ms = start_ms + int(i * 1000 / rate)
            customer = Customer.new("messenger", rng, page_id=page)
            plan.add(port, page, "message", customer.text(timestamp_ms=at_ms), at_ms, customer.user_id)

    plan.build = build
    return plan


def _plan_real(port: int, rate: int, seconds: float, page: str, rng: random.Random) -> Plan:
    """The realistic mix: who writes when (relative seconds), then each item built in send order."""
    total = int(rate * seconds)
    # (wanted time, order, customer index, what): sorted by wanted time, then sent at the rate.
    events: list[tuple[float, int, int, str]] = []
    people: list[tuple[Customer, bool]] = []
    order = 0
    kept = 0
    while kept < total:
        customer = Customer.new("messenger", rng, page_id=page)
        customer.app_id = META_INBOX_APP_ID
        returning = rng.random() >= NEW_SHARE
        index = len(people)
        people.append((customer, returning))
        burst = rng.random() < BURST_SHARE
        t = rng.uniform(0, seconds)
        times = []
        for _ in range(rng.randint(1, 8)):
            times.append(t)
            t += rng.uniform(0.3, 3) if burst else rng.uniform(5, 30)
        wanted = [(at, "message") for at in times]
        # The page answers some customers from Meta's inbox, a little after one of their messages.
        echo_at = rng.choice(times) + rng.uniform(2, 15) if rng.random() < ECHO_SHARE else None
        if echo_at is not None:
            wanted.append((echo_at, "echo"))
        # Reads and reactions need a page message: the run's echo, or the history's reply.
        seen_from = echo_at if echo_at is not None else (times[0] if returning else None)
        if seen_from is not None:
            if rng.random() < READ_SHARE:
                wanted.append((seen_from + rng.uniform(1, 10), "read"))
            if rng.random() < REACTION_SHARE:
                wanted.append((seen_from + rng.uniform(1, 20), "reaction"))
        for at, what in wanted:
            order += 1
            events.append((at, order, index, what))
            kept += at < seconds
    events = sorted(e for e in events if e[0] < seconds)[:total]
    writing = sorted({index for _, _, index, _ in events})
    plan = Plan(customers=len(writing), new_customers=sum(1 for i in writing if not people[i][1]))
    # The history of returning customers: a first message hours ago, the page's reply within the hour.
    now_ms = int(time.time() * 1000)
    for i in writing:
        customer, returning = people[i]
        if not returning:
            continue
        first_ms = now_ms - rng.randint(HOUR_MS, 48 * HOUR_MS)
        first = customer.text(timestamp_ms=first_ms)
        reply = customer.echo(timestamp_ms=first_ms + rng.randint(60_000, HOUR_MS))
        plan.seed_first.append((first["message"]["mid"], first))
        plan.seed_echoes.append((reply["message"]["mid"], reply))

    def build(start_ms: int) -> None:
        for slot, (_, _, index, what) in enumerate(events):
            customer = people[index][0]
            at_ms = start_ms + int(slot * 1000 / rate)
            if what == "message":
                item = customer.text(timestamp_ms=at_ms)
            elif what == "echo":
                item = customer.echo(timestamp_ms=at_ms)
            elif what == "read":
                item = customer.read(timestamp_ms=at_ms)
            else:
                item = customer.reaction("react", timestamp_ms=at_ms)
            plan.add(port, page, what, item, at_ms, customer.user_id)

    plan.build = build
    return plan


def _seed_requests(port: int, page: str, items: list[tuple[str, JSONObject]]) -> list[tuple[str, bytes]]:
    """History items, several per webhook (Meta batches too); the key is the first item's mid."""
    out = []
    for i in range(0, len(items), SEED_ITEMS_PER_WEBHOOK):
        chunk = [item for _, item in items[i : i + SEED_ITEMS_PER_WEBHOOK]]
        out.append((items[i][0], _frame(port, chunk, page, int(time.time() * 1000))))
    return out


async def _send_at_rate(port: int, requests: list[tuple[str, bytes]], rate: float) -> tuple[dict[str, float], int]:
    """Open-loop: one request every 1/rate s over keep-alive connections; returns key ->
    send time and the number of 200 answers."""
    sent: dict[str, float] = {}
    accepted = 0
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

    async def worker() -> None:
        nonlocal accepted
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (job := await queue.get()) is not None:
                key, request = job
                sent[key] = time.time()
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


async def _stored(conn: asyncpg.Connection, plan_kinds: dict[str, str], plan: Plan, wait: float) -> dict[str, float]:
    """What of ``plan_kinds`` crm has stored: key -> commit time (epoch s) for messages and
    echoes, -1 for reads and reactions (they carry no commit time)."""
    mids = [k for k, kind in plan_kinds.items() if kind in ("message", "echo")]
    reads = {k: plan.reads[k] for k in plan_kinds if k in plan.reads}
    reactions = {k: plan.reactions[k] for k in plan_kinds if k in plan.reactions}
    deadline = time.monotonic() + wait
    found: dict[str, float] = {}
    while True:
        rows = await conn.fetch(
            "SELECT mid, extract(epoch FROM created_at) AS at FROM crm.messages WHERE mid = ANY($1)", mids
        )
        found = {row["mid"]: float(row["at"]) for row in rows}
        if reads:
            rows = await conn.fetch(
                "SELECT ct.external_id AS who, (extract(epoch FROM r.watermark) * 1000)::bigint AS wm"
                " FROM crm.receipts r JOIN crm.conversations c ON c.id = r.conversation_id"
                " JOIN crm.contacts ct ON ct.id = c.contact_id"
                " WHERE r.kind = 'read' AND ct.external_id = ANY($1)",
                list({who for who, _ in reads.values()}),
            )
            have = {(row["who"], int(row["wm"])) for row in rows}
            found.update((k, -1.0) for k, wanted in reads.items() if wanted in have)
        if reactions:
            rows = await conn.fetch(
                "SELECT mid, jsonb_object_keys(reactions) AS who FROM crm.messages WHERE mid = ANY($1)",
                list({mid for mid, _ in reactions.values()}),
            )
            have = {(row["mid"], row["who"]) for row in rows}
            found.update((k, -1.0) for k, wanted in reactions.items() if wanted in have)
        if len(found) == len(plan_kinds) or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(1)


async def _wait_idle(conn: asyncpg.Connection) -> None:
    """Until no contact's profile is waiting to be fetched (at most ``E2E_DRAIN_SECONDS``)."""
    started = time.monotonic()
    while True:
        pending = await conn.fetchval("SELECT count(*) FROM crm.contacts WHERE profile_status = 'pending'")
        if not pending or time.monotonic() - started >= DRAIN_SECONDS:
            break
        await asyncio.sleep(0.5)
    waited = time.monotonic() - started
    print(f"crm idle after {waited:.1f} s ({pending} profiles still to fetch)", file=sys.stderr, flush=True)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process from /proc, or None when it is gone or unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


async def _pg_backends(conn: asyncpg.Connection) -> list[int]:
    rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", DB)
    return [int(r["pid"]) for r in rows]


async def _cpu_snapshot(conn: asyncpg.Connection, named: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far: each named process, PostgreSQL's backends of the scratch database
    (one entry each, ``pg:<pid>``) and this process."""
    out = {name: s for name, pid in named.items() if (s := _cpu_seconds(pid)) is not None}
    for pid in await _pg_backends(conn):
        if (s := _cpu_seconds(pid)) is not None:
            out[f"pg:{pid}"] = s
    out["load generator"] = time.process_time()
    return out


def _cpu_share(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    """Percent of one core per process over ``wall`` seconds; PostgreSQL's backends summed."""
    shares: dict[str, float] = {}
    for name, end in after.items():
        used = end - before.get(name, 0.0)
        label = "postgres" if name.startswith("pg:") else name
        shares[label] = shares.get(label, 0.0) + 100 * used / wall
    return shares


def _percentile(values: list[float], q: float) -> float | None:
    return round(values[int(q * (len(values) - 1))], 1) if values else None


async def _run(
    conn: asyncpg.Connection, ingest_port: int, rate: int, seconds: float, named: dict[str, int], run: int
) -> dict[str, Any]:
    page = "77" + str(random.randrange(10**12))
    # Each run of the benchmark (the warm-up is 0) draws customers and message ids of its own:
    # a run repeating an earlier one's ids would have them taken for Meta's retries.
    rng = random.Random(f"{SEED}/{run}" if SEED else time.time_ns())
    planner = _plan_real if MIX == "real" else _plan_new
    plan = planner(ingest_port, rate, seconds, page, rng)
    # History first (not measured): returning customers' first messages, then the page's replies.
    for part in (plan.seed_first, plan.seed_echoes):
        if part:
            keys = {mid: "message" for mid, _ in part}
            await _send_at_rate(
                ingest_port, _seed_requests(ingest_port, page, part), SEED_RATE / SEED_ITEMS_PER_WEBHOOK
            )
            have = await _stored(conn, keys, plan, DRAIN_SECONDS)
            if len(have) < len(keys):
                print(f"history: {len(keys) - len(have)} of {len(keys)} not stored", file=sys.stderr, flush=True)
    # The clock starts once crm is idle: the history's (and an earlier rate's) profile fetches done.
    await _wait_idle(conn)
    # Meta's timestamps are the planned send times: building takes a moment, the clock starts after.
    start_ms = int(time.time() * 1000) + 1000 + int(rate * seconds * 0.1)
    plan.build(start_ms)
    wait = start_ms / 1000 - time.time()
    if wait > 0:
        await asyncio.sleep(wait)
    cpu_before, wall = await _cpu_snapshot(conn, named), time.perf_counter()
    sent, accepted = await _send_at_rate(ingest_port, plan.requests, rate)
    cpu = _cpu_share(cpu_before, await _cpu_snapshot(conn, named), time.perf_counter() - wall)
    stored = await _stored(conn, plan.kinds, plan, DRAIN_SECONDS)
    timed = [k for k in stored if stored[k] >= 0]
    latencies = sorted((stored[k] - sent[k]) * 1000 for k in timed)
    # By send time: a growing backlog shows as later tenths waiting longer than the first.
    in_order = [(stored[k] - sent[k]) * 1000 for k in sorted(timed, key=sent.__getitem__)]
    tenth = max(1, len(in_order) // 10)
    tenths = [round(statistics.median(in_order[i : i + tenth])) for i in range(0, tenth * 10, tenth)]
    lost = Counter(kind for key, kind in plan.kinds.items() if key not in stored)
    profiles = await conn.fetchval(
        "SELECT count(*) FROM crm.contacts c JOIN crm.channels ch ON ch.id = c.channel_id"
        " WHERE ch.external_id = $1 AND c.profile_status = 'fetched'",
        page,
    )
    return {
        "rate": rate,
        "sent": len(sent),
        "accepted": accepted,
        "stored": len(stored),
        "lost": sum(lost.values()),
        "lost_by_kind": dict(lost),
        "kinds": dict(Counter(plan.kinds.values())),
        "customers": plan.customers,
        "new_customers": plan.new_customers,
        "history_items": len(plan.seed_first) + len(plan.seed_echoes),
        "profiles_fetched": profiles,
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": _percentile(latencies, 0.99),
        "p50_by_tenth_ms": tenths if len(in_order) >= 10 else [],
        "cpu_percent": {name: round(share) for name, share in sorted(cpu.items(), key=lambda kv: -kv[1])},
    }


async def main() -> None:
    admin = await asyncpg.connect(PG + "/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{DB}"')
    await admin.close()
    env = dict(os.environ)
    env.update(
        APP_KEY=base64.b64encode(os.urandom(32)).decode(),
        DATABASE_URL=f"{PG}/{DB}",
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
    credentials = new_credentials() if NATS_AUTH else {}
    passwords = {name: credential.password for name, credential in credentials.items()}
    nats_proc, nats_port = start_nats_server(
        Path(tempfile.mkdtemp(prefix="e2e-nats-")),
        config=NATS_AUTH_CONFIG if NATS_AUTH else None,
        password_hashes={name: credential.bcrypt_hash for name, credential in credentials.items()},
    )
    env["NATS_URL"] = f"nats://127.0.0.1:{nats_port}"
    # And a Redis of its own: ingest's dedupe window there remembers every item stored, so on
    # a shared Redis a second run with the same E2E_SEED would have its items taken for
    # repeats (accepted, never stored).
    redis_proc, redis_port = start_redis_server()
    env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    # Each service's own NATS user (none without E2E_NATS_AUTH).
    user = {
        name: {"NATS_USER": name, "NATS_PASSWORD": passwords[name]} if NATS_AUTH else {} for name in ("ingest", "crm")
    }
    if NATS_AUTH:
        # What crm declares at its start, declared before ingest (which may not) starts.
        nc = await nats.connect(env["NATS_URL"], user="crm", password=passwords["crm"], inbox_prefix="_INBOX_crm")
        await ensure_streams(nc.jetstream())
        live = LiveSettings(nc, env["APP_KEY"])
        await live.start()
        await live.stop()
        await nc.close()
    subprocess.run([sys.executable, "-m", "crm", "migrate"], env=env, check=True)
    ingest_port, graph_port = _free_port(), _free_port()
    crm_ports = [_free_port() for _ in range(REPLICAS)]
    # Every new customer's profile is fetched, from the sandbox's Graph API in a process of its own.
    env["META_GRAPH_URL"] = f"http://127.0.0.1:{graph_port}"
    graph = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "--factory", "jggl_sandbox.graph_fake:create_app"),
            *("--host", "127.0.0.1", "--port", str(graph_port), "--log-level", "warning", "--no-access-log"),
        ]
    )
    ingest = subprocess.Popen([sys.executable, "-m", "ingest"], env={**env, **user["ingest"], "PORT": str(ingest_port)})
    procs = [graph, ingest]
    named = {
        "graph fake": graph.pid,
        "ingest": ingest.pid,
        "nats-server": nats_proc.pid,
        "redis-server": redis_proc.pid,
    }
    results = []
    try:
        await _wait_ready(f"http://127.0.0.1:{graph_port}", graph, path="/_fake/requests")
        await _wait_ready(f"http://127.0.0.1:{ingest_port}", ingest)
        for n, port in enumerate(crm_ports, 1):
            # One at a time: the first migrates nothing and creates the admin, the next find it there.
            crm = subprocess.Popen([sys.executable, "-m", "crm"], env={**env, **user["crm"], "PORT": str(port)})
            procs.append(crm)
            named[f"crm {n}" if REPLICAS > 1 else "crm"] = crm.pid
            await _wait_ready(f"http://127.0.0.1:{port}", crm)
        conn = await asyncpg.connect(f"{PG}/{DB}")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{crm_ports[0]}") as api:
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
            warm = await _run(conn, ingest_port, WARMUP_RATE, WARMUP_SECONDS, named, 0)
            print(f"warm-up: {warm['sent']} events at {WARMUP_RATE}/s", file=sys.stderr, flush=True)
            for run, rate in enumerate(RATES, 1):
                row = await _run(conn, ingest_port, rate, SECONDS, named, run)
                deals = await api.get("/api/deals", params={"limit": 5}, headers={"Authorization": f"Bearer {token}"})
                row["api_deals_ok"] = deals.status_code == 200 and len(deals.json()["items"]) > 0
                results.append(row)
                print(row, file=sys.stderr, flush=True)
        await conn.close()
    finally:
        # crm first, the Graph fake last: profile fetches in flight at the stop still get answers.
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(20)
        for server in (nats_proc, redis_proc):
            server.terminate()
            server.wait(10)
        admin = await asyncpg.connect(PG + "/postgres")
        await admin.execute(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await admin.close()
    print(
        f"\nend to end (webhook sent -> stored in crm), mix {MIX!r}, {SECONDS:.0f} s per rate,"
        f" {REPLICAS} crm replica(s), NATS users {'on' if NATS_AUTH else 'off'}"
    )
    print(f"{'rate/s':>7} {'sent':>7} {'200':>7} {'stored':>7} {'lost':>5} {'p50 ms':>8} {'p99 ms':>8}  lost by kind")
    for r in results:
        print(
            f"{r['rate']:>7} {r['sent']:>7} {r['accepted']:>7} {r['stored']:>7} {r['lost']:>5}"
            f" {r['p50_ms']!s:>8} {r['p99_ms']!s:>8}  {r['lost_by_kind'] or '-'}"
        )
    for r in results:
        print(f"\n{r['rate']}/s: {r['customers']} customers ({r['new_customers']} new), events {r['kinds']},")
        print(f"  history sent first: {r['history_items']} items; profiles fetched by the end: {r['profiles_fetched']}")
        print(f"  p50 ms per tenth of the run: {r['p50_by_tenth_ms']}")
        print("  CPU while sending, % of one core: " + ", ".join(f"{k} {v}" for k, v in r["cpu_percent"].items()))


if __name__ == "__main__":
    uvloop.run(main())

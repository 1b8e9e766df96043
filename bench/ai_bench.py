"""AI analyses: how many Gemini calls a realistic stream of conversations costs, how many
analyses one ai replica sustains, and how long a deal waits for its AI summary.

Two parts (``--part calls|latency|all``):

* **calls**: ai in this process, as ``python -m ai`` builds it (a NATS server of the
  bench's own, a fresh schema in the ``jggl_bench`` database, the sandbox's Gemini fake
  with Gemini Flash's latency). crm's message events are published as crm publishes them:
  new conversations arrive open loop at ``--rate`` per second for ``--seconds``; each
  customer writes 1-8 messages a few seconds apart, some conversations get a manager's
  reply or a reply typed in Meta's inbox. Reported per ``AI_CONCURRENCY``: messages,
  conversations, Gemini calls (the fake's record), calls per 100 customer messages,
  analyses by provider, analyses per minute over the sustained part, and the time from a
  conversation's last message event to the completed analysis of that version. Then a
  saturation run per concurrency: debounce 0, many one-message conversations queued at
  once, the highest analyses/min one replica does against the ceiling C x 60 / L.
* **latency**: the whole system as processes (ingest, crm, ai; Graph and Gemini fakes; a
  private NATS; fresh schemas): customers write 1-8 messages each through signed webhooks,
  conversations spread over ``--spread`` seconds; from the moment a conversation's last
  webhook got 200, its deal is read through crm's API (logged in as the admin) until its
  AI analysis covers that message. Reported: p50/p99/max against debounce + 5 s.

Figures only, no assertions. Everything runs on loopback and is bounded in time; processes,
schemas and the NATS servers are removed at the end, on errors and on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import math
import os
import random
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import asyncpg
import httpx
import nats
import uvloop

from ai.config import AiSettings
from ai.migrate import upgrade
from ai.process import AiService, build
from jggl_common.bus import EventPublisher
from jggl_common.contracts import ContactRef, Envelope
from jggl_common.db import create_engine, ensure_schema
from jggl_common.logs import configure_logging
from jggl_common.streams import ensure_streams
from jggl_common.testing import CrmMessage, free_port, start_nats_server
from jggl_sandbox.gemini_fake import GeminiFakeServer
from jggl_sandbox.graph_fake import GraphFakeServer
from jggl_sandbox.meta_webhooks import Customer, signed, webhook

PG = os.environ.get("AI_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = "jggl_bench"
DB_URL = f"{PG}/{DB}"
REDIS_URL = os.environ.get("AI_BENCH_REDIS", "redis://127.0.0.1:6379/11")
APP_KEY = base64.b64encode(os.urandom(32)).decode()
GEMINI_KEY = "bench-gemini-key"
META_SECRET = "ai-bench-app-secret"  # noqa: S105 - a throwaway secret of the benchmark
ADMIN = ("bench-ai@jggl.local", "Bench-Password-ai-1")
REQUESTS_PER_MINUTE = 100_000.0
"""AI_REQUESTS_PER_MINUTE: high, so the quota is not what is measured."""

CUSTOMER_TEXTS = (
    "Hi! How much is the green backpack?",
    "Здравствуйте! Сколько стоит доставка в Киев?",
    "Is the M size in stock?",
    "Do you deliver to Kraków by Friday?",
    "I want to buy two, please order them",
    "Можно оплатить картой при получении?",
    "Thanks, I'll think about it",
    "what colours do you have",
    "Хочу купить, как оформить заказ?",
    "My parcel arrived broken, I want a refund",
    "ok",
    "Есть в наличии размер L?",
)
MANAGER_TEXTS = (
    "Hello! It is 40 EUR, shall I reserve one for you?",
    "Добрый день! Да, есть в наличии. Оформить заказ?",
    "We deliver in 2-3 days, shipping is free over 50 EUR.",
)
ECHO_TEXT = "Hello! Yes, it is available. Which size do you need?"

Author = Literal["customer", "manager", "meta_inbox"]


OUT = sys.stdout
"""The figures go here; everything else (progress, the services' own logs) to stderr."""


def out(*parts: object) -> None:
    """A line of the report."""
    print(*parts, file=OUT, flush=True)


def log(*parts: object) -> None:
    """Progress, to stderr (the tables go to stdout)."""
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float | None:
    """The ``p`` quantile (nearest rank) of ``values``."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table on stdout."""
    out(f"\n{title}\n")
    out("| " + " | ".join(header) + " |")
    out("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        out("| " + " | ".join(row) + " |")


# ------------------------------------------------------------------------- conversations


@dataclass
class Conversation:
    """One customer's burst: who writes each message and when (seconds after the start)."""

    number: int
    start: float
    authors: list[Author]
    offsets: list[float]
    texts: list[str]
    last_done: float | None = None
    """wall-clock time the last message's event was acknowledged (calls) or its webhook got 200 (latency)"""

    @property
    def customer_messages(self) -> int:
        return self.authors.count("customer")


def plan(
    rng: random.Random,
    count: int,
    spread: float,
    *,
    gap: tuple[float, float],
    reply_share: float,
    echo_share: float,
    customers_only: bool = False,
) -> list[Conversation]:
    """``count`` conversations starting evenly over ``spread`` seconds: 1-8 customer
    messages ``gap`` seconds apart; a share get a manager's reply, a few one typed in
    Meta's inbox, each after a random customer message."""
    out = []
    for i in range(count):
        authors: list[Author] = ["customer"] * rng.randint(1, 8)
        if not customers_only:
            if rng.random() < reply_share:
                authors.insert(rng.randint(1, len(authors)), "manager")
            if rng.random() < echo_share:
                authors.insert(rng.randint(1, len(authors)), "meta_inbox")
        start = i * spread / count
        offsets = [start]
        for _ in authors[1:]:
            offsets.append(offsets[-1] + rng.uniform(*gap))
        texts = [
            rng.choice(CUSTOMER_TEXTS)
            if a == "customer"
            else rng.choice(MANAGER_TEXTS)
            if a == "manager"
            else ECHO_TEXT
            for a in authors
        ]
        out.append(Conversation(i, start, authors, offsets, texts))
    return out


# ------------------------------------------------------------------------- part 1: ai in process


@dataclass
class Events:
    """crm's message events for conversations numbered from ``base`` (conversation,
    deal and contact share the id)."""

    base: int
    next_message: int = 0

    def __post_init__(self) -> None:
        self.next_message = self.base * 10

    def event(self, conv: Conversation, index: int) -> Envelope:
        cid = self.base + conv.number
        self.next_message += 1
        mid = self.next_message
        author, text = conv.authors[index], conv.texts[index]
        contact = ContactRef(id=cid, platform="messenger", external_id=f"psid-{cid}", display_name="Bench Customer")
        message = CrmMessage(mid, cid, cid, contact, text, datetime.now(UTC), mid=f"m_bench_{mid}")
        if author == "customer":
            return message.received(first=index == 0)
        return message.sent(echo=author == "meta_inbox", response_seconds=30)


@dataclass
class AiRun:
    service: AiService
    gemini: GeminiFakeServer
    publisher: EventPublisher
    db: asyncpg.Connection
    schema: str
    settings: AiSettings


async def ensure_database() -> None:
    admin = await asyncpg.connect(PG + "/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await admin.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await admin.close()


async def drop_schemas(*schemas: str) -> None:
    conn = await asyncpg.connect(DB_URL)
    try:
        for schema in schemas:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@contextlib.contextmanager
def private_nats() -> Iterator[str]:
    store = Path(tempfile.mkdtemp(prefix="ai-bench-nats-"))
    proc, port = start_nats_server(store)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(store, ignore_errors=True)


@contextlib.asynccontextmanager
async def ai_in_process(*, concurrency: int, debounce: float, latency_ms: float) -> AsyncIterator[AiRun]:
    """ai built as ``python -m ai`` builds it, on a fresh schema, NATS server and fake."""
    schema = "ai_bench_" + secrets.token_hex(4)
    with private_nats() as nats_url:
        gemini = GeminiFakeServer(latency_ms=latency_ms, api_keys={GEMINI_KEY}).start()
        gemini.fake.max_records = 1_000_000
        service: AiService | None = None
        nc = None
        db = None
        try:
            settings = AiSettings(
                _env_file=None,  # type: ignore[call-arg]
                app_key=APP_KEY,
                nats_url=nats_url,
                app_url="http://localhost",
                database_url=DB_URL,
                db_schema=schema,
                gemini_api_key=GEMINI_KEY,
                gemini_base_url=gemini.url,
                ai_debounce_seconds=debounce,
                ai_requests_per_minute=REQUESTS_PER_MINUTE,
                ai_concurrency=concurrency,
                settings_bucket=f"SETTINGS_{schema}",
                log_level="WARNING",
            )
            engine = create_engine(DB_URL, schema, pool_size=settings.db_pool_size)
            await ensure_schema(engine, schema)
            await upgrade(engine, schema)
            service = await build(settings, engine=engine)
            await service.start()
            nc = await nats.connect(nats_url)
            await ensure_streams(nc.jetstream())
            db = await asyncpg.connect(DB_URL, server_settings={"search_path": schema})
            yield AiRun(service, gemini, EventPublisher(nc), db, schema, settings)
        finally:
            # Each step whatever the one before did (a NATS server gone first on Ctrl-C
            # makes the drain fail): the schema and the servers must not outlive the run.
            if db is not None:
                await _quietly(db.close())
            if nc is not None:
                await _quietly(nc.close())
            if service is not None:
                await _quietly(service.stop())
            gemini.stop()
            await drop_schemas(schema)


async def _quietly(step: Awaitable[Any]) -> None:
    try:
        await step
    except Exception as exc:
        log(f"  while stopping: {type(exc).__name__}: {exc}")


async def publish_plan(run: AiRun, conversations: list[Conversation], events: Events) -> tuple[float, int]:
    """Publish every message event at its time (open loop); returns the start time and
    the events published. Events due in the same moment go in one batch."""
    schedule = sorted(
        ((conv.offsets[i], conv.number, i) for conv in conversations for i in range(len(conv.authors))),
    )
    by_number = {conv.number: conv for conv in conversations}
    started = time.time()
    clock = time.perf_counter()
    done = 0
    next_report = 10.0
    while done < len(schedule):
        at = schedule[done][0]
        delay = clock + at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elapsed = time.perf_counter() - clock
        batch = []
        while done < len(schedule) and schedule[done][0] <= elapsed:
            batch.append(schedule[done])
            done += 1
        envelopes = [events.event(by_number[number], index) for _, number, index in batch]
        await run.publisher.publish_many((e.subject, e) for e in envelopes)
        acked = time.time()
        for _, number, index in batch:
            conv = by_number[number]
            if index == len(conv.authors) - 1:
                conv.last_done = acked
        if elapsed >= next_report:
            log(f"  {elapsed:.0f} s: {done} events published, {await analyses_so_far(run.db)} analyses")
            next_report += 10.0
    return started, len(schedule)


async def analyses_so_far(db: asyncpg.Connection) -> int:
    return int(await db.fetchval("SELECT count(*) FROM analyses WHERE status = 'completed'"))


async def wait_covered(db: asyncpg.Connection, conversations: int, messages: int, timeout: float) -> bool:
    """Until every transcript holds all its messages and owes nothing (or ``timeout``)."""
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
    while time.monotonic() < deadline:
        row = await db.fetchrow(
            "SELECT count(*) FILTER (WHERE due_at IS NULL AND claimed_by IS NULL AND gemini_version = version) AS done,"
            " count(*) FILTER (WHERE due_at <= now()) AS waiting, coalesce(sum(version), 0) AS messages"
            " FROM transcripts"
        )
        if row["done"] == conversations and row["messages"] == messages:
            return True
        if time.monotonic() - last_report >= 10:
            log(f"  draining: {row['done']}/{conversations} conversations covered, {row['waiting']} due and waiting")
            last_report = time.monotonic()
        await asyncio.sleep(0.5)
    return False


async def calls_run(args: argparse.Namespace, concurrency: int) -> dict[str, Any]:
    """The realistic mix at ``--rate`` new conversations/s for ``--seconds``."""
    rng = random.Random(args.seed)
    count = max(1, round(args.rate * args.seconds))
    conversations = plan(rng, count, args.seconds, gap=args.gap, reply_share=0.3, echo_share=0.05)
    messages = sum(len(c.authors) for c in conversations)
    customer = sum(c.customer_messages for c in conversations)
    longest = max(c.offsets[-1] - c.start for c in conversations)
    log(
        f"calls, AI_CONCURRENCY={concurrency}: {count} conversations over {args.seconds:.0f} s,"
        f" {messages} messages ({customer} from customers), bursts up to {longest:.0f} s"
    )
    async with ai_in_process(concurrency=concurrency, debounce=args.debounce, latency_ms=args.latency_ms) as run:
        events = Events(base=rng.randrange(10**6, 10**7) * 1000)
        cpu0 = _cpu_split(run.gemini)
        started, published = await publish_plan(run, conversations, events)
        drained = await wait_covered(run.db, count, messages, args.drain_timeout)
        ended = time.time()
        cpu = _cpu_split(run.gemini) - cpu0
        rows = await run.db.fetch(
            "SELECT conversation_id, version, provider, status, extract(epoch FROM created_at)::float8 AS at"
            " FROM analyses ORDER BY id"
        )
        calls = run.gemini.requests()
    completed = [r for r in rows if r["status"] == "completed"]
    providers = Counter(r["provider"] for r in completed)
    per_conversation = Counter(r["conversation_id"] for r in completed)
    # The time from a conversation's last message event to its analysis of that version.
    final = {events.base + c.number: c for c in conversations}
    covered: dict[int, float] = {}
    for r in completed:
        conv = final.get(r["conversation_id"])
        if conv is not None and r["version"] >= len(conv.authors) and r["conversation_id"] not in covered:
            covered[r["conversation_id"]] = r["at"]
    waits = [covered[cid] - final[cid].last_done for cid in covered if final[cid].last_done is not None]
    # Sustained: analyses come due from the debounce after the first conversation's start
    # to the debounce after the last one's last message; between the debounce after the
    # longest burst and the debounce after the last arrival every burst length is in play
    # (the flat part). Runs too short to have one use a window as long as the arrivals,
    # shifted by the mean burst (ramps included, so it reads low).
    longest = max(c.offsets[-1] - c.start for c in conversations)
    lo, hi, flat = started + args.debounce + longest, started + args.debounce + args.seconds, True
    if hi - lo < 10:
        shift = args.debounce + statistics.fmean(c.offsets[-1] - c.start for c in conversations)
        lo, hi, flat = started + shift, started + shift + args.seconds, False
    in_window = sum(1 for r in completed if lo <= r["at"] < hi)
    analysis_times = sorted(r["at"] for r in completed)
    return {
        "concurrency": concurrency,
        "conversations": count,
        "customer_messages": customer,
        "messages": messages,
        "published": published,
        "calls": len(calls),
        "call_statuses": dict(Counter(c.status for c in calls)),
        "calls_per_100": 100 * len(calls) / customer,
        "completed": len(completed),
        "failed": len(rows) - len(completed),
        "gemini": providers.get("gemini", 0),
        "heuristic": providers.get("heuristic", 0),
        "analysed": Counter(per_conversation.values()),
        "covered": len(covered),
        "drained": drained,
        "per_minute": in_window * 60 / (hi - lo),
        "window": (lo - started, hi - started, flat),
        "offered_per_minute": args.rate * 60,
        "ceiling": concurrency * 60_000 / args.latency_ms if args.latency_ms else None,
        "p50": pct(waits, 0.5),
        "p99": pct(waits, 0.99),
        "max": max(waits) if waits else None,
        "last_analysis_after": (analysis_times[-1] - started) if analysis_times else None,
        "cpu_per_analysis_ms": 1000 * cpu.ai / len(completed) if completed else None,
        "fake_cpu_per_analysis_ms": 1000 * cpu.fake / len(completed) if completed else None,
        "cpu_share": cpu.ai / max(ended - started, 1e-9),
    }


async def saturation_run(args: argparse.Namespace, concurrency: int) -> dict[str, Any]:
    """Debounce 0, one-message conversations all queued at once: analyses/min at the top."""
    ceiling = concurrency * 60_000 / args.latency_ms if args.latency_ms else None
    count = max(40, math.ceil((ceiling or 600) * args.saturation_seconds / 60))
    rng = random.Random(args.seed + concurrency)
    conversations = [Conversation(i, 0.0, ["customer"], [0.0], [rng.choice(CUSTOMER_TEXTS)]) for i in range(count)]
    log(f"saturation, AI_CONCURRENCY={concurrency}: {count} one-message conversations at once, debounce 0")
    async with ai_in_process(concurrency=concurrency, debounce=0.0, latency_ms=args.latency_ms) as run:
        events = Events(base=rng.randrange(10**6, 10**7) * 1000)
        started = time.time()
        cpu0 = _cpu_split(run.gemini)
        envelopes = [events.event(conv, 0) for conv in conversations]
        await run.publisher.publish_many((e.subject, e) for e in envelopes)
        drained = await wait_covered(run.db, count, count, args.drain_timeout)
        cpu = _cpu_split(run.gemini) - cpu0
        times = sorted(
            float(t)
            for t in await run.db.fetchval(
                "SELECT array_agg(extract(epoch FROM created_at)::float8) FROM analyses WHERE status = 'completed'"
            )
            or []
        )
        calls = len(run.gemini.requests())
    # The middle 80 % of the completions: no start-up, no tail.
    rate = None
    if len(times) >= 10:
        a, b = int(0.1 * len(times)), int(0.9 * len(times)) - 1
        if times[b] > times[a]:
            rate = (b - a) * 60 / (times[b] - times[a])
    return {
        "concurrency": concurrency,
        "conversations": count,
        "completed": len(times),
        "calls": calls,
        "drained": drained,
        "per_minute": rate,
        "ceiling": ceiling,
        "seconds": (times[-1] - started) if times else None,
        "cpu_per_analysis_ms": 1000 * cpu.ai / len(times) if times else None,
        "fake_cpu_per_analysis_ms": 1000 * cpu.fake / len(times) if times else None,
    }


async def part_calls(args: argparse.Namespace) -> None:
    configure_logging("ai", "WARNING")
    results = []
    for concurrency in args.concurrency:
        results.append(await calls_run(args, concurrency))
        log(results[-1])
    saturation = []
    for concurrency in args.concurrency:
        saturation.append(await saturation_run(args, concurrency))
        log(saturation[-1])
    out(
        f"\nAI analyses, ai in process against the Gemini fake. Settings: fake latency {args.latency_ms:.0f} ms,"
        f" AI_DEBOUNCE_SECONDS {args.debounce:g}, AI_REQUESTS_PER_MINUTE {REQUESTS_PER_MINUTE:.0f} (not the limit"
        " measured), AI_MAX_NEW_MESSAGES 10, other AI settings default; new conversations open loop at"
        f" {args.rate:g}/s for {args.seconds:.0f} s, 1-8 customer messages each {args.gap[0]:g}-{args.gap[1]:g} s"
        " apart, 30 % get a manager's reply, 5 % a reply from Meta's inbox; seed"
        f" {args.seed}; load average before {args.load_before}"
    )
    table(
        "Calls and throughput (realistic mix)",
        [
            "AI_CONCURRENCY",
            "conversations",
            "customer msgs (all)",
            "Gemini calls",
            "calls / 100 customer msgs",
            "completed (gemini / heuristic)",
            "analysed once / twice / more",
            "analyses/min sustained (offered)",
            "ceiling C×60/L",
            "last msg → analysis p50 / p99 / max s",
            "all covered",
        ],
        [
            [
                str(r["concurrency"]),
                str(r["conversations"]),
                f"{r['customer_messages']} ({r['messages']})",
                str(r["calls"]) + ("" if set(r["call_statuses"]) <= {200} else f" {r['call_statuses']}"),
                fmt(r["calls_per_100"]),
                f"{r['completed']} ({r['gemini']} / {r['heuristic']})",
                f"{r['analysed'].get(1, 0)} / {r['analysed'].get(2, 0)}"
                f" / {sum(v for k, v in r['analysed'].items() if k > 2)}",
                f"{fmt(r['per_minute'], 0)}{'' if r['window'][2] else ' (ramps)'} ({r['offered_per_minute']:.0f})",
                fmt(r["ceiling"], 0),
                f"{fmt(r['p50'])} / {fmt(r['p99'])} / {fmt(r['max'])}",
                ("yes" if r["drained"] else f"no: {r['covered']}/{r['conversations']}")
                + f", last at {fmt(r['last_analysis_after'], 0)} s",
            ]
            for r in results
        ],
    )
    out(
        "\nsustained = analyses completed per minute between "
        + ", ".join(f"{r['window'][0]:.0f} and {r['window'][1]:.0f} s (C={r['concurrency']})" for r in results)
        + " after the first conversation arrived"
        + ("" if all(r["window"][2] for r in results) else "; (ramps): too short for a flat part, reads low")
    )
    table(
        f"Saturation: debounce 0, one-message conversations queued at once, fake latency {args.latency_ms:.0f} ms",
        ["AI_CONCURRENCY", "conversations", "completed", "Gemini calls", "analyses/min", "ceiling C×60/L", "share"],
        [
            [
                str(s["concurrency"]),
                str(s["conversations"]),
                str(s["completed"]),
                str(s["calls"]),
                fmt(s["per_minute"], 0),
                fmt(s["ceiling"], 0),
                f"{100 * s['per_minute'] / s['ceiling']:.0f} %" if s["per_minute"] and s["ceiling"] else "—",
            ]
            for s in saturation
        ],
    )
    out(
        "\nCPU per completed analysis, ai and the publisher (the fake's thread apart, in brackets): "
        + ", ".join(
            f"C={r['concurrency']} mix {fmt(r['cpu_per_analysis_ms'])} ms ({fmt(r['fake_cpu_per_analysis_ms'])} ms),"
            f" {100 * r['cpu_share']:.0f} % of a core"
            for r in results
        )
        + "; "
        + ", ".join(
            f"C={s['concurrency']} saturation {fmt(s['cpu_per_analysis_ms'])} ms"
            f" ({fmt(s['fake_cpu_per_analysis_ms'])} ms)"
            for s in saturation
        )
    )


# ------------------------------------------------------------------------- part 2: the whole system

_SUMMARY_COUNT = re.compile(r"^(\d+) messages;")


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} not ready after {timeout}s")


@dataclass
class System:
    urls: dict[str, str]
    gemini: GeminiFakeServer
    ai_schema: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def whole_system(args: argparse.Namespace) -> AsyncIterator[System]:
    """ingest, crm and ai as processes on private ports, schemas and NATS; fakes for Meta's
    Graph API and Gemini."""
    tag = secrets.token_hex(4)
    crm_schema, ai_schema = f"crm_bench_{tag}", f"ai_bench_{tag}"
    procs: list[subprocess.Popen[bytes]] = []
    with (
        private_nats() as nats_url,
        GraphFakeServer() as graph,
        GeminiFakeServer(latency_ms=args.latency_ms, api_keys={GEMINI_KEY}) as gemini,
    ):
        base = {
            **os.environ,
            "APP_KEY": APP_KEY,
            "NATS_URL": nats_url,
            "REDIS_URL": REDIS_URL,
            "DATABASE_URL": DB_URL,
            "APP_URL": "http://localhost",
            "META_APP_SECRET": META_SECRET,
            "SETTINGS_BUCKET": f"SETTINGS_{tag}",
            "LOG_LEVEL": "WARNING",
            "HOST": "127.0.0.1",
            "RATE_LIMIT_PER_MINUTE": "100000000",
        }
        ports = {name: free_port() for name in ("crm", "ingest", "ai")}
        envs = {
            "crm": {
                **base,
                "PORT": str(ports["crm"]),
                "DB_SCHEMA": crm_schema,
                "META_GRAPH_URL": graph.url,
                "META_ACCESS_TOKEN": "bench-page-token",  # the Graph fake takes any token
                "ADMIN_EMAIL": ADMIN[0],
                "ADMIN_PASSWORD": ADMIN[1],
            },
            "ingest": {**base, "PORT": str(ports["ingest"])},
            "ai": {
                **base,
                "PORT": str(ports["ai"]),
                "DB_SCHEMA": ai_schema,
                "GEMINI_API_KEY": GEMINI_KEY,
                "GEMINI_BASE_URL": gemini.url,
                "AI_DEBOUNCE_SECONDS": str(args.debounce),
                "AI_REQUESTS_PER_MINUTE": str(REQUESTS_PER_MINUTE),
                "AI_CONCURRENCY": str(args.concurrency[0]),
            },
        }
        try:
            for name, command in (("crm", "migrate"), ("ai", "migrate"), ("crm", "create-admin")):
                done = subprocess.run(
                    [sys.executable, "-m", name, command], env=envs[name], capture_output=True, check=False
                )
                if done.returncode != 0:
                    raise SystemExit(f"{name} {command} failed:\n{done.stderr.decode(errors='replace')[-3000:]}")
            for name in ("crm", "ingest", "ai"):
                procs.append(subprocess.Popen([sys.executable, "-m", name], env=envs[name], stdout=sys.stderr.fileno()))
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            for proc, name in zip(procs, ("crm", "ingest", "ai"), strict=True):
                await asyncio.to_thread(_wait_ready, urls[name], proc)
            yield System(urls, gemini, ai_schema, procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            await drop_schemas(crm_schema, ai_schema)


@dataclass
class Watch:
    """A conversation's deal seen through the API."""

    conv: Conversation
    psid: str
    deal_id: int | None = None
    seen_after: float | None = None
    source: str | None = None
    early: bool = False
    """found before the fine polling began (the figure is then up to the coarse interval late)"""
    polls: int = 0


async def part_latency(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    conversations = plan(
        rng, args.conversations, args.spread, gap=args.gap, reply_share=0, echo_share=0, customers_only=True
    )
    messages = sum(len(c.authors) for c in conversations)
    log(f"latency: {len(conversations)} conversations over {args.spread:.0f} s, {messages} customer messages")
    page = "9" + str(rng.randrange(10**13, 10**14))
    stats: Counter[str] = Counter()
    async with whole_system(args) as system:
        crm = httpx.AsyncClient(base_url=system.urls["crm"], timeout=10.0)
        ingest = httpx.AsyncClient(base_url=system.urls["ingest"], timeout=10.0)
        try:
            login = await crm.post("/api/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
            login.raise_for_status()
            crm.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
            has_version: list[bool] = []
            deal_ids: dict[str, int] = {}
            lookup_lock = asyncio.Lock()

            async def deal_of(psid: str) -> int | None:
                async with lookup_lock:
                    if psid not in deal_ids:
                        stats["list_calls"] += 1
                        items = (await crm.get("/api/deals", params={"limit": 200})).json()["items"]
                        for item in items:
                            deal_ids.setdefault(item["contact"]["external_id"], item["id"])
                    return deal_ids.get(psid)

            def covers(deal: dict[str, Any], n: int) -> bool:
                if not deal.get("ai_summary"):
                    return False
                if "ai_version" in deal:
                    has_version.append(True)
                    return (deal["ai_version"] or 0) >= n
                has_version.append(False)
                match = _SUMMARY_COUNT.match(deal["ai_summary"])
                return bool(match and int(match.group(1)) >= n)

            async def watch(w: Watch) -> None:
                n = len(w.conv.authors)
                assert w.conv.last_done is not None
                fine_from = w.conv.last_done + max(args.debounce - 3.0, 0.0)
                deadline = w.conv.last_done + args.debounce + args.poll_timeout
                while time.time() < deadline:
                    if w.deal_id is None:
                        w.deal_id = await deal_of(w.psid)
                    if w.deal_id is not None:
                        w.polls += 1
                        answer = await crm.get(f"/api/deals/{w.deal_id}")
                        if answer.status_code == 200 and covers(deal := answer.json(), n):
                            w.seen_after = time.time() - w.conv.last_done
                            w.source = deal.get("ai_source")
                            w.early = time.time() < fine_from
                            return
                    now = time.time()
                    await asyncio.sleep(0.25 if now >= fine_from else min(2.0, max(fine_from - now, 0.05)))

            async def customer(conv: Conversation, clock: float) -> Watch:
                person = Customer.new("messenger", random.Random(rng.random()), page_id=page)
                w = Watch(conv, person.user_id)
                for offset, text in zip(conv.offsets, conv.texts, strict=True):
                    delay = clock + offset - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    now_ms = int(time.time() * 1000)
                    hook = signed(
                        webhook("messenger", page, [person.text(text, timestamp_ms=now_ms)], now_ms), META_SECRET
                    )
                    answer = await ingest.post("/webhooks/meta", content=hook.body, headers=hook.headers)
                    stats[f"webhook_{answer.status_code}"] += 1
                conv.last_done = time.time()
                await watch(w)
                return w

            clock = time.perf_counter()
            cpu_before = _children_cpu(system.procs)
            tasks = [asyncio.create_task(customer(conv, clock)) for conv in conversations]
            progress = asyncio.create_task(_progress(tasks))
            try:
                watches = await asyncio.gather(*tasks)
            finally:
                progress.cancel()
                for task in tasks:
                    task.cancel()
            elapsed = time.perf_counter() - clock
            cpu_after = _children_cpu(system.procs)
            db = await asyncpg.connect(DB_URL, server_settings={"search_path": system.ai_schema})
            try:
                per_conversation = await db.fetch(
                    "SELECT conversation_id, count(*) AS n FROM analyses WHERE status = 'completed'"
                    " GROUP BY conversation_id"
                )
                providers = dict(
                    await db.fetch(
                        "SELECT provider, count(*) FROM analyses WHERE status = 'completed' GROUP BY provider"
                    )
                )
            finally:
                await db.close()
            calls = len(system.gemini.requests())
        finally:
            await crm.aclose()
            await ingest.aclose()
    seen = [w.seen_after for w in watches if w.seen_after is not None]
    analysed = Counter(r["n"] for r in per_conversation)
    goal = args.debounce + 5
    p99 = pct(seen, 0.99)
    by_source = Counter(w.source for w in watches if w.seen_after is not None)
    out(
        f"\nAI summary on the deal, the whole system as processes (ingest, crm, ai, NATS, PostgreSQL, Graph and Gemini"
        f" fakes on {os.cpu_count()} cores). Settings: AI_DEBOUNCE_SECONDS {args.debounce:g}, AI_CONCURRENCY"
        f" {args.concurrency[0]}, AI_REQUESTS_PER_MINUTE {REQUESTS_PER_MINUTE:.0f}, fake latency"
        f" {args.latency_ms:.0f} ms; {len(conversations)} conversations starting evenly over {args.spread:.0f} s,"
        f" 1-8 customer messages each {args.gap[0]:g}-{args.gap[1]:g} s apart ({messages} webhooks); the deal read"
        f" every 250 ms from {max(args.debounce - 3, 0):g} s after the last webhook's 200 (every 2 s before);"
        f" covered = {'ai_version' if has_version and all(has_version) else 'the summary count'} ≥ the messages sent;"
        f" load average before {args.load_before}"
    )
    table(
        "Last webhook 200 → the deal shows the analysis of that message (crm API)",
        [
            "conversations",
            "seen",
            "p50 s",
            "p99 s",
            "max s",
            f"goal p99 ≤ {goal:g} s",
            "analysed once / twice / more",
            "Gemini calls",
            "source on the deal",
        ],
        [
            [
                str(len(conversations)),
                str(len(seen)) + (f" ({sum(w.early for w in watches)} early)" if any(w.early for w in watches) else ""),
                fmt(pct(seen, 0.5)),
                fmt(p99),
                fmt(max(seen) if seen else None),
                "met" if p99 is not None and p99 <= goal and len(seen) == len(conversations) else "not met",
                f"{analysed.get(1, 0)} / {analysed.get(2, 0)} / {sum(v for k, v in analysed.items() if k > 2)}",
                str(calls),
                ", ".join(f"{k} {v}" for k, v in sorted(by_source.items(), key=lambda kv: str(kv[0]))) or "—",
            ]
        ],
    )
    cpu = {name: (cpu_after[name] - cpu_before[name]) / elapsed for name in cpu_after}
    answers = {k: v for k, v in stats.items() if k.startswith("webhook")}
    out(
        f"\nwebhook answers {answers},"
        f" API reads {sum(w.polls for w in watches) + stats['list_calls']} in {elapsed:.0f} s;"
        f" CPU (share of one core) "
        + ", ".join(f"{name} {100 * share:.0f} %" for name, share in cpu.items())
        + f"; ai's providers {providers}"
    )


@dataclass(frozen=True)
class CpuSplit:
    """CPU seconds of this process: the Gemini fake's server thread, and the rest (ai and
    the publisher)."""

    ai: float
    fake: float

    def __sub__(self, other: CpuSplit) -> CpuSplit:
        return CpuSplit(self.ai - other.ai, self.fake - other.fake)


def _cpu_split(gemini: GeminiFakeServer) -> CpuSplit:
    total = time.process_time()
    fake = 0.0
    thread = gemini._thread  # the fake's uvicorn thread, to tell its CPU from ai's
    if thread is not None and thread.native_id is not None:
        try:
            fields = Path(f"/proc/self/task/{thread.native_id}/stat").read_text().rsplit(")", 1)[1].split()
            fake = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            fake = 0.0
    return CpuSplit(total - fake, fake)


def _children_cpu(procs: list[subprocess.Popen[bytes]]) -> dict[str, float]:
    """user+system CPU seconds of crm, ingest and ai so far (from /proc)."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name, proc in zip(("crm", "ingest", "ai"), procs, strict=False):
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            out[name] = 0.0
    return out


async def _progress(tasks: list[asyncio.Task[Watch]]) -> None:
    while True:
        await asyncio.sleep(10)
        log(f"  {sum(t.done() for t in tasks)}/{len(tasks)} conversations seen with their analysis")


# ------------------------------------------------------------------------- entry point


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--part", choices=("calls", "latency", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="~20 s of arrivals per run instead of the defaults")
    parser.add_argument("--rate", type=float, default=5.0, help="calls: new conversations per second (5)")
    parser.add_argument("--seconds", type=float, help="calls: seconds of arrivals (120; quick 20)")
    parser.add_argument("--concurrency", default="2,8", help="AI_CONCURRENCY per run, comma-separated (2,8)")
    parser.add_argument("--latency-ms", type=float, default=800.0, help="the Gemini fake's latency (800, Flash)")
    parser.add_argument("--debounce", type=float, default=20.0, help="AI_DEBOUNCE_SECONDS (20, the default)")
    parser.add_argument("--gap", default="1,5", help="seconds between a conversation's messages, min,max (1,5)")
    parser.add_argument("--saturation-seconds", type=float, help="calls: the saturation run's length (30; quick 15)")
    parser.add_argument("--conversations", type=int, help="latency: conversations (60; quick 20)")
    parser.add_argument("--spread", type=float, help="latency: seconds the conversations start over (60; quick 20)")
    parser.add_argument("--poll-timeout", type=float, default=90.0, help="latency: give up this long after debounce")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="calls: wait for the backlog this long")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    args.concurrency = [int(c) for c in str(args.concurrency).split(",") if c.strip()]
    args.gap = tuple(float(g) for g in args.gap.split(","))
    if len(args.gap) != 2 or not 0 <= args.gap[0] <= args.gap[1]:
        parser.error("--gap wants min,max")
    if not args.concurrency or min(args.concurrency) < 1:
        parser.error("--concurrency wants positive integers")
    args.seconds = args.seconds or (20.0 if args.quick else 120.0)
    args.saturation_seconds = args.saturation_seconds or (15.0 if args.quick else 30.0)
    args.conversations = args.conversations or (20 if args.quick else 60)
    args.spread = args.spread or (20.0 if args.quick else 60.0)
    args.load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return args


async def main(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    await ensure_database()
    if args.part in ("calls", "all"):
        await part_calls(args)
    if args.part in ("latency", "all"):
        await part_latency(args)


if __name__ == "__main__":
    options = parse()
    try:
        # In-process ai logs to stdout; the report keeps stdout to itself.
        with contextlib.redirect_stdout(sys.stderr):
            uvloop.run(main(options))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; processes, schemas and NATS servers stopped", file=sys.stderr)
        sys.exit(130)

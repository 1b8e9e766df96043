"""The scheduler's two heavy jobs: the SLA check at 1,000,000 deals, and the Meta backfill.

Two parts (``--part sla|backfill|all``), figures on stdout as Markdown tables, progress on
stderr. Loopback only, bounded in time, everything it starts is stopped at the end (on
errors and Ctrl-C too).

* **sla**: crm's ``sweep_sla`` (the code the ``sla_check`` tick runs, in this process)
  against the million-deal database of ``bench/crm_bench.py`` (its generator, imported:
  the database ``SCHED_BENCH_DB``, default ``jggl_scheduler_bench``, is generated once,
  ~2 minutes, and kept; ``SCHED_BENCH_REGENERATE=1`` builds it again). The waiting state is
  set up on it: a share of the open deals (``SCHED_WAITING_SHARE``, 0.2) waits for a reply,
  waiting since a moment spread evenly over the ``SCHED_WAITING_DAYS`` (7) before the
  simulated now. The simulated now is the next Monday, SLA + 1 minute after opening
  (default business hours 09:00-18:00 UTC, Monday to Friday, SLA 30 minutes): the first
  sweep of the week, when everyone who wrote since Friday's close crosses the SLA at
  once. Everything a sweep at Friday's close would have announced is announced already
  (``sla_breach_since`` / ``sla_escalation_since`` = ``awaiting_reply_since``). Timed:
  one batch (``sweep_sla`` with ``limit=500``, its commit included), the run to completion
  the way crm's tick loops (batches until nothing is left), repeated from the same state,
  and a sweep one minute later that finds nothing new (the steady state of a tick a
  minute). ``EXPLAIN (ANALYZE, BUFFERS)`` of the sweep's own query (captured from
  SQLAlchemy, run in a rolled-back transaction) shows the index and the rows it reads;
  ``pg_stat_user_tables`` shows whether ``deals`` was scanned sequentially. The events the
  sweep stages stay in the outbox (deleted between runs); publishing them to NATS after the
  commit is not part of the figure.
* **backfill**: ingest, crm and the scheduler as processes (``jggl_common.e2e.Cluster``: a
  NATS server of its own, fresh schemas in ``SCHED_BENCH_E2E_DB``, default ``jggl_bench``),
  the sandbox's Graph fake in this process. For each ``META_SYNC_CALLS_PER_SECOND`` of
  ``--rates`` (2, Meta's limit, and 50): a page whose first customer's webhook arrived
  (so crm has the channel), then ``--conversations`` (200) customers writing
  ``--messages`` (20, all that Meta keeps) messages each, all webhooks dropped; an admin
  runs ``meta_sync`` for the window through crm's API (the scheduler fires it, crm
  reads the Conversations API with paging and feeds ``INGEST``). Measured from the
  ``POST /api/jobs/meta_sync/run`` to the last of those messages committed in crm (its
  ``created_at``): messages/s; the Graph calls and their pacing from the fake's record.
  A second run of the same window must store nothing (the stream's duplicate window and
  crm's unique ``mid`` drop every message again). After each run the bench waits until
  the fake got no call for 5 s: crm's tick consumer keeps the default 30 s ``ack_wait``,
  so a longer backfill can be redelivered and run again; those calls are reported as
  "until quiet" and kept out of the next run's figures.

``make bench-scheduler`` takes about 15 minutes (11 of them the backfill at 2 calls/s).

Knobs: ``--quick`` (a smoke run: fewer repeats, 50 conversations), ``--sla-repeats`` (5),
``--idle-repeats`` (30), ``--backfill-repeats`` (3), ``--rates`` (``2,50``),
``--conversations``, ``--messages``; environment ``SCHED_BENCH_DB``,
``SCHED_WAITING_SHARE``, ``SCHED_WAITING_DAYS``, ``BENCH_DEALS`` (1,000,000),
``BENCH_PG``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432").rstrip("/")
SLA_DB = os.environ.get("SCHED_BENCH_DB", "jggl_scheduler_bench")
E2E_DB = os.environ.get("SCHED_BENCH_E2E_DB", "jggl_bench")
WAITING_SHARE = float(os.environ.get("SCHED_WAITING_SHARE", "0.2"))
WAITING_DAYS = float(os.environ.get("SCHED_WAITING_DAYS", "7"))
REGENERATE = os.environ.get("SCHED_BENCH_REGENERATE", "") not in ("", "0")
# crm_bench reads its database name at import; the Cluster its database and Redis.
os.environ["BENCH_DB"] = SLA_DB
os.environ.setdefault("TEST_DATABASE_URL", f"{PG}/{E2E_DB}")
os.environ.setdefault("TEST_REDIS_URL", "redis://127.0.0.1:6379/10")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg  # noqa: E402
import crm_bench  # noqa: E402
import httpx  # noqa: E402
import nats  # noqa: E402
import uvloop  # noqa: E402
from sqlalchemy import event  # noqa: E402

from crm.sla import BusinessHours, sweep_sla  # noqa: E402
from jggl_common.db import create_engine, session_factory, session_scope  # noqa: E402
from jggl_common.e2e import APP_SECRET, Cluster  # noqa: E402
from jggl_sandbox.graph_fake import FakeGraph, GraphFakeServer  # noqa: E402

SLA_MINUTES = 30
HOURS = BusinessHours.from_settings("09:00-18:00", "UTC")
BATCH = 500
TOKEN = "bench-page-token"  # noqa: S105 - the Graph fake's page token
ADMIN = ("bench-scheduler@jggl.local", "Bench-Password-sched-1")
TEXTS = (
    "Hi! How much is the green backpack?",
    "Здравствуйте! Сколько стоит доставка в Киев?",
    "Is the M size in stock?",
    "Можно оплатить картой при получении?",
    "Do you deliver to Kraków by Friday?",
    "Хочу купить, как оформить заказ?",
)

OUT = sys.stdout


def out(*parts: object) -> None:
    print(*parts, file=OUT, flush=True)


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank quantile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} / {five:.1f}"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    out(f"\n{title}\n")
    out("| " + " | ".join(header) + " |")
    out("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        out("| " + " | ".join(row) + " |")


# ---------------------------------------------------------------------------------- SLA


def monday_morning(now: datetime) -> tuple[datetime, datetime]:
    """The next Monday, SLA + 1 minute after opening, and the Friday close before it."""
    day = now.astimezone(HOURS.zone).date() + timedelta(days=1)
    while day.weekday() != 0:
        day += timedelta(days=1)
    monday = HOURS.window(day)
    friday = HOURS.window(day - timedelta(days=3))
    assert monday is not None
    assert friday is not None
    return monday[0] + timedelta(minutes=SLA_MINUTES + 1), friday[1]


def cutoffs(at: datetime) -> tuple[datetime, datetime]:
    """The breach and escalation cutoffs of a sweep at ``at``."""
    breach = HOURS.rewind(at, SLA_MINUTES * 60)
    escalation = HOURS.rewind(at, SLA_MINUTES * 60 * 2)
    assert breach is not None
    assert escalation is not None
    return breach, escalation


async def ensure_database() -> None:
    if REGENERATE or not await crm_bench._exists():
        log(f"generating {crm_bench.DEALS:,} deals in {SLA_DB} with bench/crm_bench.py's generator (~2 min)")
        await crm_bench._recreate_database()
        engine = create_engine(f"{PG}/{SLA_DB}", crm_bench.SCHEMA, pool_size=1)
        try:
            await crm_bench._migrate(engine)
        finally:
            await engine.dispose()
        await crm_bench.generate(crm_bench.DEALS)
    else:
        log(f"keeping the generated database {SLA_DB}")
        engine = create_engine(f"{PG}/{SLA_DB}", crm_bench.SCHEMA, pool_size=1)
        try:
            await crm_bench._migrate(engine)
            await crm_bench._create_missing_indexes(engine)
        finally:
            await engine.dispose()


async def set_waiting(conn: asyncpg.Connection, now: datetime) -> dict[str, int]:
    """A share of the open deals waits for a reply, since a moment in the days before ``now``."""
    await conn.execute("SELECT setseed(0.17)")
    await conn.execute(
        "UPDATE deals SET awaiting_reply_since = NULL, sla_breach_since = NULL, sla_escalation_since = NULL"
        " WHERE awaiting_reply_since IS NOT NULL OR sla_breach_since IS NOT NULL OR sla_escalation_since IS NOT NULL"
    )
    await conn.execute(
        "UPDATE deals SET awaiting_reply_since = $1::timestamptz - random() * $2::float8 * interval '1 day'"
        " WHERE status = 'open' AND random() < $3::float8",
        now - timedelta(minutes=1),
        WAITING_DAYS,
        WAITING_SHARE,
    )
    await conn.execute("VACUUM (ANALYZE) deals")
    row = await conn.fetchrow(
        "SELECT count(*) AS deals, count(*) FILTER (WHERE status = 'open') AS open,"
        " count(*) FILTER (WHERE status = 'open' AND awaiting_reply_since IS NOT NULL) AS waiting FROM deals"
    )
    assert row is not None
    return dict(row)


async def announce_as_of(conn: asyncpg.Connection, at: datetime) -> None:
    """The state after a sweep at ``at``: every episode past a cutoff announced; outbox empty."""
    breach, escalation = cutoffs(at)
    await conn.execute(
        "UPDATE deals SET sla_breach_since = CASE WHEN awaiting_reply_since <= $1 THEN awaiting_reply_since END,"
        " sla_escalation_since = CASE WHEN awaiting_reply_since <= $2 THEN awaiting_reply_since END"
        " WHERE status = 'open' AND awaiting_reply_since IS NOT NULL"
        " AND (sla_breach_since IS DISTINCT FROM CASE WHEN awaiting_reply_since <= $1 THEN awaiting_reply_since END"
        " OR sla_escalation_since IS DISTINCT FROM CASE WHEN awaiting_reply_since <= $2 THEN awaiting_reply_since END)",
        breach,
        escalation,
    )
    await conn.execute("DELETE FROM outbox")
    await conn.execute("VACUUM deals")
    await conn.execute("VACUUM outbox")


class Captured:
    """The sweep's SELECT ... FOR UPDATE statements, as SQLAlchemy sends them to asyncpg."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if "FOR UPDATE" in statement and "awaiting_reply_since" in statement:
            self.statements.append((statement, tuple(parameters)))


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


async def explain(conn: asyncpg.Connection, statement: str, params: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of the sweep's query, rolled back (it locks rows); the
    text plan and, from a second (JSON) run, what the scan of ``deals`` read."""
    texts: list[str] = []
    summary: dict[str, Any] = {}
    for fmt in ("TEXT", "JSON"):
        transaction = conn.transaction()
        await transaction.start()
        try:
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT {fmt}) {statement}", *params)
        finally:
            await transaction.rollback()
        if fmt == "TEXT":
            texts = [row[0] for row in rows]
            continue
        plan = json.loads(rows[0][0])[0]
        for node in _nodes(plan["Plan"]):
            if node.get("Relation Name") == "deals":
                loops = node.get("Actual Loops", 1)
                summary = {
                    "node": node["Node Type"],
                    "index": node.get("Index Name", "—"),
                    "returned": node.get("Actual Rows", 0) * loops,
                    "removed": node.get("Rows Removed by Filter", 0) * loops,
                    "blocks": node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0),
                }
        summary["ms"] = plan["Execution Time"]
    return "\n".join(texts), summary


async def seq_scans(conn: asyncpg.Connection) -> tuple[int, int, int]:
    await asyncio.sleep(1.2)  # statistics reach the shared counters within a second of idle
    row = await conn.fetchrow(
        "SELECT seq_scan, seq_tup_read, idx_scan FROM pg_stat_user_tables WHERE schemaname = 'crm' AND relname = 'deals'"
    )
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


async def run_sla(sla_repeats: int, idle_repeats: int) -> None:
    log(f"SLA part: load average {load()}")
    await ensure_database()
    conn = await asyncpg.connect(f"{PG}/{SLA_DB}", server_settings={"search_path": "crm,public"})
    engine = create_engine(f"{PG}/{SLA_DB}", "crm", pool_size=2)
    captured = Captured()
    event.listen(engine.sync_engine, "before_cursor_execute", captured)
    sessions = session_factory(engine)
    try:
        now, friday_close = monday_morning(datetime.now(UTC))
        counts = await set_waiting(conn, now)
        breach_now, escalation_now = cutoffs(now)
        breach_fri, escalation_fri = cutoffs(friday_close)
        log(f"simulated now {now:%a %Y-%m-%d %H:%M} UTC; {counts}")
        await announce_as_of(conn, friday_close)
        state = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE sla_breach_since IS NOT NULL) AS breached,"
            " count(*) FILTER (WHERE sla_escalation_since IS NOT NULL) AS escalated,"
            " count(*) FILTER (WHERE awaiting_reply_since <= $1 AND sla_breach_since IS NULL) AS new_breaches,"
            " count(*) FILTER (WHERE awaiting_reply_since <= $2 AND sla_escalation_since IS NULL) AS new_escalations"
            " FROM deals WHERE status = 'open' AND awaiting_reply_since IS NOT NULL",
            breach_now,
            escalation_now,
        )
        assert state is not None
        pg_version = await conn.fetchval("SHOW server_version")
        index_size = await conn.fetchval("SELECT pg_size_pretty(pg_relation_size('crm.ix_deals_open_waiting'))")

        async def sweep(at: datetime, limit: int = BATCH) -> tuple[float, Any]:
            started = time.perf_counter()
            async with session_scope(sessions) as session:
                result = await sweep_sla(session, HOURS, SLA_MINUTES, at, limit=limit)
            return (time.perf_counter() - started) * 1000, result

        async def discover(at: datetime) -> list[tuple[str, tuple[Any, ...]]]:
            """The sweep's queries at ``at``, from a sweep rolled back."""
            captured.statements.clear()
            async with sessions() as session:
                await sweep_sla(session, HOURS, SLA_MINUTES, at, limit=BATCH)
                await session.rollback()
            return list(captured.statements)

        # The first batch's query on the Monday-morning state, explained.
        batch_plans = [await explain(conn, sql, params) for sql, params in await discover(now)]

        first_batches: list[float] = []
        batches: list[float] = []
        totals: list[float] = []
        per_run: list[tuple[int, int, int]] = []
        for repeat in range(sla_repeats):
            if repeat:
                await announce_as_of(conn, friday_close)
            run_started = time.perf_counter()
            breaches = escalations = calls = 0
            while True:
                elapsed, result = await sweep(now)
                calls += 1
                breaches += result.breaches
                escalations += result.escalations
                (first_batches if calls == 1 else batches).append(elapsed)
                if not result.more:
                    break
                if calls > 400:
                    raise SystemExit("the sweep did not finish in 400 batches")
            totals.append((time.perf_counter() - run_started) * 1000)
            per_run.append((breaches, escalations, calls))
            log(
                f"run {repeat + 1}: {breaches} breaches, {escalations} escalations in {calls} batches, {totals[-1]:.0f} ms"
            )
        # A minute later: the few who crossed the SLA in that minute, then the steady state,
        # a sweep that finds nothing new.
        idle_at = now + timedelta(minutes=1)
        minute_later, minute_result = await sweep(idle_at)
        idle_plans = [await explain(conn, sql, params) for sql, params in await discover(idle_at)]
        before = await seq_scans(conn)
        idle: list[float] = []
        for _ in range(idle_repeats):
            elapsed, result = await sweep(idle_at)
            if result.breaches or result.escalations:
                raise SystemExit(f"the sweep a minute later found something: {result}")
            idle.append(elapsed)
        after = await seq_scans(conn)
        await announce_as_of(conn, friday_close)

        out("\n## SLA check at 1,000,000 deals (`sweep_sla`)\n")
        out(
            f"PostgreSQL {pg_version}; {counts['deals']:,} deals, {counts['open']:,} open,"
            f" **{counts['waiting']:,} waiting for a reply** ({WAITING_SHARE:.0%} of the open ones, waiting since"
            f" a moment spread over the {WAITING_DAYS:g} days before the simulated now); `ix_deals_open_waiting`"
            f" {index_size}. Business hours 09:00-18:00 UTC Monday to Friday, SLA {SLA_MINUTES} min. Simulated now:"
            f" {now:%a %Y-%m-%d %H:%M} UTC (breach cutoff {breach_now:%a %H:%M}, escalation cutoff"
            f" {escalation_now:%a %H:%M}); announced already, as a sweep at Friday's close"
            f" ({friday_close:%a %H:%M}; cutoffs {breach_fri:%a %H:%M} / {escalation_fri:%a %H:%M}) left it:"
            f" {state['breached']:,} breaches and {state['escalated']:,} escalations. New at Monday's first sweep:"
            f" **{state['new_breaches']:,} breaches**, {state['new_escalations']:,} escalations."
        )
        out(f"Load average (1 / 5 min) at the end of the SLA part: {load()}.")
        table(
            "Timings (ms; each sweep call in its own transaction, commit included)",
            ["what", "n", "p50", "p95", "max"],
            [
                [f"first batch (limit {BATCH}) of Monday's sweep", str(len(first_batches))]
                + [f"{pct(first_batches, q):.1f}" for q in (0.5, 0.95, 1.0)],
                [f"later batches of {BATCH}", str(len(batches))]
                + ([f"{pct(batches, q):.1f}" for q in (0.5, 0.95, 1.0)] if batches else ["—"] * 3),
                [
                    f"run to completion: {per_run[0][0]:,} breaches + {per_run[0][1]:,} escalations,"
                    f" {per_run[0][2]} calls",
                    str(len(totals)),
                ]
                + [f"{pct(totals, q):.0f}" for q in (0.5, 0.95, 1.0)],
                [
                    f"a minute later: {minute_result.breaches} breaches + {minute_result.escalations} escalations",
                    "1",
                    f"{minute_later:.1f}",
                    "—",
                    "—",
                ],
                ["again at that minute: nothing new", str(len(idle))]
                + [f"{pct(idle, q):.1f}" for q in (0.5, 0.95, 1.0)],
            ],
        )
        out(
            f"\n`deals` between the idle sweeps: seq_scan +{after[0] - before[0]} (tuples read sequentially"
            f" +{after[1] - before[1]:,}), idx_scan +{after[2] - before[2]} over {idle_repeats} sweeps"
        )
        for title, plans in (("Monday's first batch", batch_plans), ("a minute later, nothing new", idle_plans)):
            for (text_plan, summary), level in zip(plans, ("breach", "escalation"), strict=False):
                out(
                    f"\n**EXPLAIN (ANALYZE, BUFFERS), {title}, level {level}**: {summary.get('node')} on"
                    f" `{summary.get('index')}`, {summary.get('returned', 0):,} rows returned,"
                    f" {summary.get('removed', 0):,} removed by the filter (of {counts['deals']:,} deals),"
                    f" {summary.get('blocks', 0):,} buffers, {summary.get('ms', 0):.1f} ms\n"
                )
                out("```")
                out(text_plan)
                out("```")
    finally:
        await engine.dispose()
        await conn.close()


# ------------------------------------------------------------------------------ backfill


async def ensure_e2e_database() -> None:
    admin = await asyncpg.connect(f"{PG}/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", E2E_DB):
            await admin.execute(f'CREATE DATABASE "{E2E_DB}"')
    finally:
        await admin.close()


async def until(what: str, check: Any, timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(interval)
    raise SystemExit(f"{what}: not within {timeout:.0f}s")


def service_cpu() -> dict[str, float]:
    """CPU seconds of this process's ``python -m <service>`` children, by service, and of
    this process (the Graph fake's thread and the polling)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {"bench": time.process_time()}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as stat_file:
                fields = stat_file.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry.name}/cmdline", "rb") as cmd_file:
                command = cmd_file.read().split(b"\0")
        except OSError:
            continue
        if int(fields[1]) != os.getpid() or len(command) < 3 or command[1] != b"-m":
            continue
        name = command[2].decode()
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return found


async def stream_messages(nats_url: str) -> int:
    client = await nats.connect(nats_url)
    try:
        info = await client.jetstream().stream_info("INGEST")
        return int(info.state.messages)
    finally:
        await client.close()


async def backfill_rate(
    graph: GraphFakeServer, rate: float, repeats: int, conversations: int, messages: int
) -> dict[str, Any]:
    """One cluster at ``META_SYNC_CALLS_PER_SECOND=rate``: ``repeats`` first runs (a new page
    each), then a second run of the last window."""
    fake = graph.fake
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="sched-bench-nats-")))
    schema = cluster.schema("crm")
    runs: list[dict[str, Any]] = []
    second: dict[str, Any] = {}
    db = await asyncpg.connect(os.environ["TEST_DATABASE_URL"])
    try:
        cluster.run("crm", "migrate")
        cluster.run("scheduler", "migrate")
        cluster.run("crm", "create-admin", ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1])
        cluster.start("ingest")
        cluster.start("crm", META_GRAPH_URL=graph.url, META_ACCESS_TOKEN=TOKEN, META_SYNC_CALLS_PER_SECOND=f"{rate:g}")
        cluster.start("scheduler")
        await asyncio.to_thread(cluster.wait_ready)
        webhooks = cluster.urls["ingest"] + "/webhooks/meta"
        async with httpx.AsyncClient(base_url=cluster.urls["crm"], timeout=30.0) as api:
            login = await api.post("/api/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
            login.raise_for_status()
            api.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

            async def job() -> dict[str, Any] | None:
                items = (await api.get("/api/jobs")).json()["items"]
                return next((j for j in items if j["name"] == "meta_sync"), None)

            await until("the meta_sync job listed", job, 60)
            # No scheduled run in the middle of a measurement ("run now" works while disabled).
            (await api.patch("/api/jobs/meta_sync", json={"enabled": False})).raise_for_status()

            async def disabled() -> bool:
                found = await job()
                return found is not None and not found["enabled"]

            await until("meta_sync disabled", disabled, 30)

            async def run_window(since: datetime) -> tuple[float, str]:
                started = time.time()
                ran = await api.post("/api/jobs/meta_sync/run", json={"since": since.isoformat()})
                if ran.status_code != 202:
                    raise SystemExit(f"run: {ran.status_code} {ran.text}")
                return started, f"manual-{ran.json()['command_id']}"

            async def outcome(slot: str) -> dict[str, Any]:
                async def done() -> dict[str, Any] | None:
                    found = await job()
                    last = found["last_outcome"] if found else None
                    return last if last and last["slot"] == slot else None

                result: dict[str, Any] = await until("the backfill's outcome", done, 120 + 2 * calls_expected / rate)
                if result["status"] != "done":
                    raise SystemExit(f"backfill failed: {result}")
                return result

            def graph_calls(since: float) -> list[float]:
                """When the Conversations API calls since ``since`` arrived at the fake."""
                return sorted(
                    r.at
                    for r in fake.calls()
                    if r.method == "GET"
                    and r.at >= since
                    and ("/conversations" in r.path or r.path.endswith("/messages"))
                )

            async def quiet(since: float) -> int:
                """Graph calls since ``since`` once none came for 5 s: a tick redelivered while
                the backfill ran does the whole backfill again."""
                deadline = time.monotonic() + 60 + 3 * calls_expected / rate
                count, changed = -1, time.monotonic()
                while time.monotonic() < deadline:
                    now_count = len(graph_calls(since))
                    if now_count != count:
                        count, changed = now_count, time.monotonic()
                    elif time.monotonic() - changed > 5:
                        break
                    await asyncio.sleep(0.5)
                return len(graph_calls(since))

            previous_channel: int | None = None
            calls_expected = math.ceil((conversations + 1) / 50) + conversations * math.ceil(messages / 20)
            page = ""
            since = datetime.now(UTC)
            for repeat in range(repeats):
                page = f"10{int(rate):04d}{repeat:02d}{int(time.time()) % 10**7:07d}"
                now_ms = int(time.time() * 1000)
                # The page's first customer got through: crm knows the channel.
                fake.inbox.drop_webhooks = False
                seed = fake.inbox.customer_writes(page, f"3{page[1:]}", "Hello!", at_ms=now_ms - 100 * 60_000)
                if await asyncio.to_thread(fake.inbox.deliver, seed, webhooks, APP_SECRET) != 200:
                    raise SystemExit("the first webhook was refused")

                async def channel(page: str = page) -> int | None:
                    return await db.fetchval(f'SELECT id FROM "{schema}".channels WHERE external_id = $1', page)

                channel_id = await until("the page's channel in crm", channel, 60)
                if previous_channel is not None:  # only this repeat's page is synced
                    (await api.patch(f"/api/channels/{previous_channel}", json={"is_active": False})).raise_for_status()
                previous_channel = channel_id
                # Then Meta loses every webhook: conversations x messages, seconds apart, interleaved.
                fake.inbox.drop_webhooks = True
                base_ms = now_ms - 90 * 60_000
                mids: list[str] = []
                for m in range(messages):
                    for c in range(conversations):
                        mid = f"m_bench{page}_{c:04d}_{m:02d}"
                        body = fake.inbox.customer_writes(
                            page,
                            f"4{page[1:]}{c:04d}",
                            TEXTS[(c + m) % len(TEXTS)],
                            at_ms=base_ms + (m * conversations + c) * 1000 * 4000 // (messages * conversations),
                            mid=mid,
                        )
                        fake.inbox.deliver(body, webhooks, APP_SECRET)
                        mids.append(mid)
                since = datetime.fromtimestamp(base_ms / 1000, UTC) - timedelta(seconds=60)
                load_before = load()
                cpu_before = service_cpu()
                started, slot = await run_window(since)

                async def stored(mids: list[str] = mids) -> asyncpg.Record | None:
                    row = await db.fetchrow(
                        f'SELECT count(*) AS n, min(created_at) AS first, max(created_at) AS last FROM "{schema}".messages'
                        " WHERE mid = ANY($1)",
                        mids,
                    )
                    return row if row is not None and row["n"] == len(mids) else None

                row = await until("every lost message stored", stored, 120 + 3 * calls_expected / rate, 0.1)
                cpu_after = service_cpu()
                cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
                result = await outcome(slot)
                calls = graph_calls(started)
                all_calls = await quiet(started)
                gaps = [b - a for a, b in itertools.pairwise(calls)]
                last_stored = row["last"].timestamp()
                runs.append(
                    {
                        "messages": len(mids),
                        "seconds": last_stored - started,
                        "per_second": len(mids) / (last_stored - started),
                        "first_stored": row["first"].timestamp() - started,
                        "crm_rate": len(mids) / max(0.001, last_stored - row["first"].timestamp()),
                        "cpu": cpu,
                        "crm_cpu_ms": cpu.get("crm", 0.0) * 1000 / len(mids),
                        "first_call": calls[0] - started,
                        "calls": len(calls),
                        "calls_until_quiet": all_calls,
                        "call_rate": (len(calls) - 1) / (calls[-1] - calls[0]) if len(calls) > 1 else 0.0,
                        "min_gap_ms": min(gaps) * 1000 if gaps else 0.0,
                        "median_gap_ms": statistics.median(gaps) * 1000 if gaps else 0.0,
                        "after_last_call": last_stored - calls[-1],
                        "job_seconds": (
                            datetime.fromisoformat(result["finished_at"]) - datetime.fromisoformat(result["started_at"])
                        ).total_seconds(),
                        "counts": result["counts"],
                        "load": f"{load_before} → {load()}",
                    }
                )
                log(f"calls/s {rate:g}, run {repeat + 1}: {runs[-1]}")
            # The same window again: nothing new may be stored.
            count_sql = (
                f'SELECT count(*) AS n, count(DISTINCT m.mid) AS mids FROM "{schema}".messages m'
                f' JOIN "{schema}".conversations c ON c.id = m.conversation_id'
                f' JOIN "{schema}".channels ch ON ch.id = c.channel_id WHERE ch.external_id = $1'
            )
            before = await db.fetchrow(count_sql, page)
            deals_before = await db.fetchval(f'SELECT count(*) FROM "{schema}".deals')
            stream_before = await stream_messages(cluster.base["NATS_URL"])
            second_started, slot = await run_window(since)
            result = await outcome(slot)
            second_calls = await quiet(second_started)
            await asyncio.sleep(5)  # anything the second run published would be stored by now
            after = await db.fetchrow(count_sql, page)
            second = {
                "published": result["counts"].get("messages"),
                "calls": second_calls,
                "stored_before": before["n"],
                "stored_after": after["n"],
                "distinct_after": after["mids"],
                "deals_before": deals_before,
                "deals_after": await db.fetchval(f'SELECT count(*) FROM "{schema}".deals'),
                "stream_added": await stream_messages(cluster.base["NATS_URL"]) - stream_before,
            }
            log(f"calls/s {rate:g}, second run: {second}")
    finally:
        await db.close()
        fake.inbox.drop_webhooks = False
        await asyncio.to_thread(cluster.close)
    return {"rate": rate, "runs": runs, "second": second}


async def run_backfill(rates: list[float], repeats: int, conversations: int, messages: int) -> None:
    log(f"backfill part: load average {load()}")
    await ensure_e2e_database()
    results = []
    with GraphFakeServer(FakeGraph(tokens={TOKEN})) as graph:
        for rate in rates:
            results.append(await backfill_rate(graph, rate, repeats, conversations, messages))
    out("\n## Meta backfill: messages recovered per second\n")
    out(
        f"{conversations} conversations x {messages} messages on one page ({conversations * messages:,} messages,"
        " every webhook dropped); ingest, crm and the scheduler as processes, the Graph fake in the bench's"
        " process; from `POST /api/jobs/meta_sync/run` to the last message committed in crm."
        f" Medians of {repeats} runs per setting."
    )
    rows = []
    for result in results:
        runs = result["runs"]

        def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return statistics.median(r[key] for r in runs)

        rows.append(
            [
                f"{result['rate']:g}",
                f"**{med('per_second'):.0f}** ({', '.join(format(r['per_second'], '.0f') for r in runs)})",
                f"{med('seconds'):.1f}",
                f"{med('first_call'):.2f} / {med('first_stored'):.2f}",
                f"{runs[0]['calls']} (until quiet: {', '.join(str(r['calls_until_quiet']) for r in runs)})",
                f"{med('call_rate'):.2f}",
                f"{med('median_gap_ms'):.0f} / {med('min_gap_ms'):.0f}",
                f"{med('job_seconds'):.1f}",
                f"{med('after_last_call'):.2f}",
                f"{med('crm_rate'):.0f}",
                " / ".join(
                    f"{statistics.median(r['cpu'].get(name, 0.0) for r in runs):.1f}"
                    for name in ("crm", "ingest", "scheduler", "bench")
                )
                + f" ({med('crm_cpu_ms'):.1f} ms of crm per message)",
                f"{runs[0]['counts']}",
                "; ".join(r["load"] for r in runs),
            ]
        )
    table(
        "Backfill runs",
        [
            "META_SYNC_CALLS_PER_SECOND",
            "messages/s, median (runs)",
            "seconds to the last stored",
            "s to first Graph call / first stored",
            "Graph calls",
            "calls/s measured",
            "gap between calls ms, median / min",
            "job's own duration s",
            "last stored after the last call s",
            "crm: first to last stored, messages/s",
            "CPU s crm / ingest / scheduler / bench (fake)",
            "job counts",
            "load average before → after",
        ],
        rows,
    )
    table(
        "Second run of the same window",
        [
            "calls/s",
            "published again",
            "Graph calls until quiet",
            "messages before → after",
            "distinct mids",
            "deals before → after",
            "INGEST grew by",
        ],
        [
            [
                f"{r['rate']:g}",
                str(r["second"]["published"]),
                str(r["second"]["calls"]),
                f"{r['second']['stored_before']} → {r['second']['stored_after']}",
                str(r["second"]["distinct_after"]),
                f"{r['second']['deals_before']} → {r['second']['deals_after']}",
                str(r["second"]["stream_added"]),
            ]
            for r in results
        ],
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("sla", "backfill", "all"), default="all")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few repeats, 50 conversations")
    parser.add_argument("--sla-repeats", type=int, default=5)
    parser.add_argument("--idle-repeats", type=int, default=30)
    parser.add_argument("--backfill-repeats", type=int, default=3)
    parser.add_argument("--rates", default="2,50", help="META_SYNC_CALLS_PER_SECOND values")
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20, help="per conversation (Meta keeps 20)")
    args = parser.parse_args()
    if args.quick:
        args.sla_repeats, args.idle_repeats, args.backfill_repeats, args.conversations = 2, 10, 1, 50
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)  # stop everything, then exit
    started = time.perf_counter()
    out(
        f"# Scheduler bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores,"
        f" load average at start {load()}"
    )
    if args.part in ("sla", "all"):
        await run_sla(args.sla_repeats, args.idle_repeats)
    if args.part in ("backfill", "all"):
        rates = [float(r) for r in args.rates.split(",")]
        await run_backfill(rates, args.backfill_repeats, args.conversations, args.messages)
    out(f"\ndone in {time.perf_counter() - started:.0f} s, load average at the end {load()}")


if __name__ == "__main__":
    uvloop.run(main())

"""Telegram notifications: how long after a customer's webhook the manager's chat gets the
message, and how many notifications a second one notifier replica sends.

Two parts (``--part latency|throughput|all``):

* **latency**: the whole path as processes: ingest, crm, notifier (``--replicas``), a
  private NATS server, fresh schemas in the ``jggl_bench`` database, the sandbox's Graph
  fake (every new customer's profile is fetched) and Telegram fake (in this process, on a
  loopback port; the notifiers' aiogram client talks to it through ``TELEGRAM_API_URL``,
  updates reach them through ingest's ``POST /webhooks/telegram``). ``--managers`` managers
  (created through crm's API) are linked by ``/start CODE`` typed in the fake (the codes are
  announced on NATS as crm announces them, which spares a login per manager); each is
  assigned ``--deals-per-manager`` conversations that exist before the measurement. Then
  signed webhooks arrive open loop at ``--rate`` per second: customers writing again
  ("new message on my deal", one notification to the assignee), and every
  ``--lead-every`` seconds a new customer (a new lead, unassigned: one notification to
  every linked chat). A warm-up (``--warmup`` s) is not reported; then ``--seconds`` are.
  Reported: webhook POST -> the fake receiving the notification, p50/p99/max, for the new
  messages and for the new leads' notifications (each chat), and what was lost (not
  received 60 s after the last webhook). The notifier's pacing is as configured: 1/s per
  chat (a burst of 3), and ``--global-pace`` per replica (0: off); the fake enforces 1/s
  per chat (a burst of 5) and ``--fake-global`` for the bot (0: off).
* **throughput**: one notifier process, ``--chats`` linked chats (rows written straight
  into its fresh schema), ``crm.message.received`` events published straight to NATS as
  crm publishes them, round robin over the chats. The rate is what the fake receives
  between the 10th and the 90th percentile of arrivals. Two runs: pacing as configured
  (1/s per chat, 30/s for the bot per replica) against the fake enforcing Telegram's limits,
  and pacing off against a fake without limits (the notifier's own throughput).

Figures only, no assertions. Loopback only; processes, schemas and NATS servers are removed
at the end (on errors and Ctrl-C too).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
import uvloop

from crm import migrate as crm_migrate
from crm.cli import create_admin
from jggl_common.bus import EventPublisher
from jggl_common.contracts import (
    ContactRef,
    MessageReceived,
    MessageReceivedData,
    TelegramLinkRequested,
    TelegramLinkRequestedData,
    link_code_hash,
)
from jggl_common.streams import ensure_streams
from jggl_common.testing import free_port, start_nats_server
from jggl_sandbox.graph_fake import GraphFakeServer
from jggl_sandbox.meta_webhooks import Customer, signed, webhook
from jggl_sandbox.telegram_fake import FakeTelegram, RateLimits, SentMessage, TelegramFakeServer
from notifier import migrate as notifier_migrate

PG = os.environ.get("NOTIFIER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
DB = "jggl_bench"
DB_URL = f"{PG}/{DB}"
REDIS_URL = os.environ.get("NOTIFIER_BENCH_REDIS", "redis://127.0.0.1:6379/13")
APP_SECRET = "notifier-bench-secret"  # noqa: S105 - a throwaway secret of the benchmark
BOT_TOKEN = "777000:notifier-bench"  # noqa: S105 - the fake's bot
WEBHOOK_SECRET = "notifier-bench-hook"  # noqa: S105
ADMIN = ("bench-admin@jggl.local", "bench-password-1")
PAGE = "104857600999001"
DRAIN_SECONDS = 60.0
_TOKEN = re.compile(r"#r(\d+)\b")


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(p * (len(ordered) - 1)))], 1)


# ---------------------------------------------------------------------------- infrastructure


class Stack:
    """Processes, NATS servers and schemas of one run, all removed at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.nats: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.schemas: list[str] = []

    def start_nats(self) -> str:
        folder = Path(tempfile.mkdtemp(prefix="notifier-bench-js-"))
        proc, port = start_nats_server(folder)
        self.nats.append((proc, folder))
        return f"nats://127.0.0.1:{port}"

    def start(self, module: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", module], env=env)
        self.procs.append(proc)
        return proc

    def stop_processes(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

    async def close(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        for proc, folder in self.nats:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(folder, ignore_errors=True)
        if self.schemas:
            conn = await asyncpg.connect(DB_URL)
            try:
                for schema in self.schemas:
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()


@contextlib.asynccontextmanager
async def stack() -> AsyncIterator[Stack]:
    admin = await asyncpg.connect(PG + "/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB):
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await admin.execute(f'CREATE DATABASE "{DB}"')
    finally:
        await admin.close()
    running = Stack()
    try:
        yield running
    finally:
        await running.close()


@contextlib.contextmanager
def telegram_fake(per_chat: bool, global_per_second: float) -> Iterator[TelegramFakeServer]:
    limits = RateLimits(
        enabled=per_chat or global_per_second > 0,
        global_per_second=global_per_second if global_per_second > 0 else 1_000_000.0,
        global_burst=max(30, int(global_per_second)) if global_per_second > 0 else 1_000_000,
        per_chat_per_second=1.0 if per_chat else 1_000_000.0,
        per_chat_burst=5 if per_chat else 1_000_000,
    )
    fake = FakeTelegram(tokens={BOT_TOKEN}, rate_limits=limits, max_records=1_000_000)
    # Telegram's update ids start at some large number; ingest remembers the ids it stored.
    fake._next_update_id = secrets.randbelow(10**9) + 1
    server = TelegramFakeServer(fake).start()
    try:
        yield server
    finally:
        server.stop()


async def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{url} exited with {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url + "/readyz", timeout=2.0)).status_code == 200:
                    return
            await asyncio.sleep(0.3)
    raise SystemExit(f"{url} not ready after {timeout}s")


def base_env(nats_url: str, tag: str) -> dict[str, str]:
    return {
        **os.environ,
        "APP_KEY": base64.b64encode(os.urandom(32)).decode(),
        "NATS_URL": nats_url,
        "REDIS_URL": REDIS_URL,
        "DATABASE_URL": DB_URL,
        "APP_URL": "http://localhost:8000",
        "META_APP_SECRET": APP_SECRET,
        "SETTINGS_BUCKET": f"SETTINGS_{tag}",
        "LOG_LEVEL": os.environ.get("NOTIFIER_BENCH_LOG_LEVEL", "WARNING"),
        "HOST": "127.0.0.1",
    }


async def until(check: Any, what: str, timeout: float, interval: float = 0.2) -> Any:
    """Poll ``check`` (a function returning a value or an awaitable) until it is truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(interval)
    raise SystemExit(f"{what}: not within {timeout:.0f}s")


# ---------------------------------------------------------------------------- latency


class Traffic:
    """Pre-signed webhooks, sent open loop over keep-alive connections."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent_at: dict[str, float] = {}
        self.accepted = 0

    @staticmethod
    def frame(port: int, customer: Customer, text: str, at_ms: int, mids: dict[str, str] | None = None) -> bytes:
        """The webhook as HTTP/1.1 bytes; its message id goes into ``mids`` under ``text``'s key."""
        item = customer.text(text, timestamp_ms=at_ms)
        if mids is not None:
            mids[text] = item["message"]["mid"]
        hook = signed(webhook("messenger", PAGE, [item], at_ms), APP_SECRET)
        head = f"POST /webhooks/meta HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len(hook.body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in hook.headers.items())
        return head.encode() + b"\r\n" + hook.body

    async def send(self, jobs: list[tuple[str, bytes]], rate: float, connections: int = 16) -> None:
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

        async def worker() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            try:
                while (job := await queue.get()) is not None:
                    key, request = job
                    self.sent_at[key] = time.time()
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(
                        (int(line[15:]) for line in head.split(b"\r\n") if line[:15].lower() == b"content-length:"), 0
                    )
                    await reader.readexactly(length)
                    self.accepted += head[9:12] == b"200"
            finally:
                writer.close()

        workers = [asyncio.create_task(worker()) for _ in range(connections)]
        start = time.perf_counter()
        for i, job in enumerate(jobs):
            queue.put_nowait(job)
            delay = start + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)


def plan(
    customers: list[Customer], rng: random.Random, rate: float, seconds: float, lead_every: float, port: int, phase: str
) -> tuple[list[tuple[str, bytes]], dict[str, Customer], dict[str, str]]:
    """Every webhook of a phase, signed before the clock starts: customers writing again,
    and a new customer every ``lead_every`` seconds (keys ``r<n>`` and ``lead:<psid>``)."""
    jobs: list[tuple[str, bytes]] = []
    leads: dict[str, Customer] = {}
    texts: dict[str, str] = {}
    mids: dict[str, str] = {}
    now_ms = int(time.time() * 1000)
    every = max(1, round(lead_every * rate)) if lead_every > 0 else 0
    for i in range(int(rate * seconds)):
        at_ms = now_ms + int(i * 1000 / rate)
        if every and i % every == every // 2:
            lead = Customer.new("messenger", rng, page_id=PAGE)
            leads[lead.user_id] = lead
            text = f"Hello, {phase} lead {lead.user_id} here"
            jobs.append((f"lead:{lead.user_id}", Traffic.frame(port, lead, text, at_ms, texts)))
            mids[f"lead:{lead.user_id}"] = texts[text]
        else:
            n = len(jobs) + int(phase == "measured") * 10_000_000
            text = f"Question #r{n} about my order"
            jobs.append((f"r{n}", Traffic.frame(port, rng.choice(customers), text, at_ms, texts)))
            mids[f"r{n}"] = texts[text]
    return jobs, leads, mids


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    tag = secrets.token_hex(4)
    crm_schema, notifier_schema = f"crm_nb_{tag}", f"notifier_nb_{tag}"
    rng = random.Random(args.seed if args.seed is not None else secrets.randbits(64))
    async with stack() as running:
        running.schemas += [crm_schema, notifier_schema]
        nats_url = running.start_nats()
        base = base_env(nats_url, tag)
        with GraphFakeServer() as graph, telegram_fake(per_chat=True, global_per_second=args.fake_global) as tg:
            ports = {"ingest": free_port(), "crm": free_port()} | {
                f"notifier{i}": free_port() for i in range(args.replicas)
            }
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            await asyncio.to_thread(notifier_migrate.upgrade_sync, DB_URL, notifier_schema)
            await asyncio.to_thread(crm_migrate.upgrade_sync, DB_URL, crm_schema)
            await create_admin(DB_URL, crm_schema, email=ADMIN[0], password=ADMIN[1], name="Bench Admin")
            procs = {
                "ingest": running.start(
                    "ingest",
                    {
                        **base,
                        "PORT": str(ports["ingest"]),
                        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
                        "RATE_LIMIT_PER_MINUTE": "100000000",
                    },
                ),
                "crm": running.start(
                    "crm",
                    {
                        **base,
                        "PORT": str(ports["crm"]),
                        "DB_SCHEMA": crm_schema,
                        "META_GRAPH_URL": graph.url,
                        "META_ACCESS_TOKEN": "bench-page-token",
                    },
                ),
            }
            for i in range(args.replicas):
                procs[f"notifier{i}"] = running.start(
                    "notifier",
                    {
                        **base,
                        "PORT": str(ports[f"notifier{i}"]),
                        "DB_SCHEMA": notifier_schema,
                        "APP_URL": urls["ingest"],
                        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
                        "TELEGRAM_API_URL": tg.url,
                        "TELEGRAM_MODE": "webhook",
                        "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
                        "TELEGRAM_GLOBAL_PER_SECOND": str(args.global_pace),
                    },
                )
            for name, proc in procs.items():
                await wait_ready(urls[name], proc)
            hook = urls["ingest"] + "/webhooks/telegram"
            await until(lambda: (tg.fake.webhook or {}).get("url") == hook, "the webhook registered", 60)
            log("services ready")

            async with httpx.AsyncClient(base_url=urls["crm"], timeout=30.0) as api:
                token = (await api.post("/api/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})).json()
                api.headers["Authorization"] = f"Bearer {token['access_token']}"
                managers = await create_managers(api, args.managers)
                log(f"{len(managers)} managers created")
                # The conversations that exist before: first messages while nobody is linked
                # (no new-lead notification), then each deal assigned to its manager.
                customers = [Customer.new("messenger", rng, page_id=PAGE) for _ in range(len(managers) * args.deals)]
                traffic = Traffic(ports["ingest"])
                now_ms = int(time.time() * 1000)
                firsts = [
                    (c.user_id, Traffic.frame(ports["ingest"], c, "Hi, I have a question", now_ms + i))
                    for i, c in enumerate(customers)
                ]
                await traffic.send(firsts, rate=200)
                deals = await deals_of(crm_schema, [c.user_id for c in customers])
                await assign(api, [(deals[c.user_id], managers[i % len(managers)]) for i, c in enumerate(customers)])
                log(f"{len(customers)} deals assigned")
            chats = {user_id: 800_000_000 + i for i, user_id in enumerate(managers)}
            await link_all(nats_url, tg, notifier_schema, chats)
            log(f"{len(chats)} chats linked")

            # Warm-up, then the measured phase.
            jobs, _, _ = plan(customers, rng, args.rate, args.warmup, 0, ports["ingest"], "warm-up")
            await traffic.send(jobs, args.rate)
            with contextlib.suppress(SystemExit):
                await until(lambda: _count_tokens(tg) >= len(jobs), "warm-up delivered", 120, 0.5)
            log(f"warm-up: {len(jobs)} webhooks")
            mark = len(tg.fake.sent())
            jobs, leads, mids = plan(
                customers, rng, args.rate, args.seconds, args.lead_every, ports["ingest"], "measured"
            )
            load = await load_average()
            traffic.accepted = 0
            cpu_before = {name: cpu_seconds(proc.pid) for name, proc in procs.items()}
            started = time.time()
            await traffic.send(jobs, args.rate)
            sent_seconds = time.time() - started
            cpu = {
                name: f"{(cpu_seconds(proc.pid) - cpu_before[name]) / sent_seconds:.0%}" for name, proc in procs.items()
            }
            expected = (len(jobs) - len(leads)) + len(leads) * len(chats)
            with contextlib.suppress(SystemExit):
                await until(lambda: len(tg.fake.sent()) - mark >= expected, "all delivered", DRAIN_SECONDS, 0.5)
            received = tg.fake.sent()[mark:]
            stored = await stored_at(crm_schema, list(mids.values()))
            committed = {key: stored[mid] for key, mid in mids.items() if mid in stored}
            limited = sum(1 for call in tg.fake.calls("sendMessage") if call.status == 429)
            running.stop_processes()  # before the fakes stop
            row = summarize_latency(args, jobs, leads, traffic, received, committed, chats, sent_seconds, load, limited)
            row["cpu_during_send"] = cpu
            return row


async def stored_at(schema: str, mids: list[str]) -> dict[str, float]:
    """When crm committed each message (its ``created_at``), by mid."""
    conn = await asyncpg.connect(DB_URL)
    try:
        rows = await conn.fetch(
            f'SELECT mid, extract(epoch FROM created_at)::float8 AS at FROM "{schema}".messages WHERE mid = ANY($1)',
            mids,
        )
    finally:
        await conn.close()
    return {row["mid"]: float(row["at"]) for row in rows}


def _count_tokens(tg: TelegramFakeServer) -> int:
    return sum(1 for message in tg.fake.sent() if "#r" in message.plain_text)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


async def create_managers(api: httpx.AsyncClient, count: int) -> list[int]:
    gate = asyncio.Semaphore(4)

    async def one(i: int) -> int:
        async with gate:
            body = {"email": f"m{i}.{secrets.token_hex(3)}@bench.local", "name": f"Manager {i}", "password": ADMIN[1]}
            answer = await api.post("/api/users", json=body)
            answer.raise_for_status()
            return int(answer.json()["id"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def deals_of(schema: str, psids: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(DB_URL)
    try:

        async def look() -> dict[str, int] | None:
            rows = await conn.fetch(
                f'SELECT c.external_id, d.id FROM "{schema}".deals d JOIN "{schema}".contacts c ON c.id = d.contact_id '
                "WHERE c.external_id = ANY($1)",
                psids,
            )
            found = {row["external_id"]: int(row["id"]) for row in rows}
            return found if len(found) == len(psids) else None

        return dict(await until(look, "the deals in crm", 120, 0.5))
    finally:
        await conn.close()


async def assign(api: httpx.AsyncClient, pairs: list[tuple[int, int]]) -> None:
    gate = asyncio.Semaphore(8)

    async def one(deal: int, user: int) -> None:
        async with gate:
            answer = await api.patch(f"/api/deals/{deal}", json={"assignee_id": user})
            answer.raise_for_status()

    await asyncio.gather(*(one(deal, user) for deal, user in pairs))


async def link_all(nats_url: str, tg: TelegramFakeServer, schema: str, chats: dict[int, int]) -> None:
    """Announce a code per manager as crm does, and type ``/start CODE`` in each chat."""
    codes = {user: secrets.token_hex(6).upper() for user in chats}
    nc = await nats.connect(nats_url)
    try:
        events = [
            TelegramLinkRequested(
                producer="crm",
                data=TelegramLinkRequestedData(
                    user_id=user,
                    name=f"Manager {user}",
                    email=f"m{user}@bench.local",
                    role="manager",
                    code_hash=link_code_hash(code),
                    expires_at=datetime.now(UTC) + timedelta(minutes=15),
                ),
            )
            for user, code in codes.items()
        ]
        await EventPublisher(nc).publish_many((event.subject, event) for event in events)
    finally:
        await nc.close()
    conn = await asyncpg.connect(DB_URL)
    try:

        async def known() -> bool:
            return bool(await conn.fetchval(f'SELECT count(*) FROM "{schema}".link_codes') >= len(codes))

        await until(known, "the link codes at the notifier", 60)

        for user, code in codes.items():
            tg.fake.user_sends(chats[user], f"/start {code}", first_name=f"M{user}")

        async def linked() -> bool:
            return bool(await conn.fetchval(f'SELECT count(*) FROM "{schema}".links') >= len(codes))

        await until(linked, "every chat linked", 180, 0.5)
    finally:
        await conn.close()
    await until(lambda: len(tg.fake.sent()) >= len(codes), "every 'Linked' answer", 120)


def summarize_latency(
    args: argparse.Namespace,
    jobs: list[tuple[str, bytes]],
    leads: dict[str, Customer],
    traffic: Traffic,
    received: list[SentMessage],
    committed: dict[str, float],
    chats: dict[int, int],
    sent_seconds: float,
    load: str,
    limited: int,
) -> dict[str, Any]:
    repeats = {key for key, _ in jobs if key.startswith("r")}
    got: dict[str, float] = {}
    duplicates = 0
    lead_got: dict[tuple[str, int], float] = {}
    for message in received:
        if match := _TOKEN.search(message.plain_text):
            key = f"r{match.group(1)}"
            if key in got:
                duplicates += 1
            got.setdefault(key, message.at)
        elif "New lead" in message.plain_text:
            shown = message.plain_text.split("\n")[1].split(" · ")[0]
            # crm announces the deal before the profile fetch: the lead shows its PSID.
            psid = shown if shown in leads else None
            if psid is not None:
                if (psid, message.chat_id) in lead_got:
                    duplicates += 1
                lead_got[(psid, message.chat_id)] = message.at
    message_ms = [(got[k] - traffic.sent_at[k]) * 1000 for k in repeats if k in got]
    # By send time: a growing backlog shows as the last tenth waiting longer than the first.
    in_order = [
        (got[k] - traffic.sent_at[k]) * 1000 for k in sorted(repeats & got.keys(), key=traffic.sent_at.__getitem__)
    ]
    tenth = max(1, len(in_order) // 10)
    to_crm = [(committed[k] - traffic.sent_at[k]) * 1000 for k in repeats if k in committed]
    crm_to_chat = [(got[k] - committed[k]) * 1000 for k in repeats if k in got and k in committed]
    lead_ms = [(at - traffic.sent_at[f"lead:{psid}"]) * 1000 for (psid, _), at in lead_got.items()]
    return {
        "rate": args.rate,
        "seconds": args.seconds,
        "sent_seconds": round(sent_seconds, 1),
        "webhooks": len(jobs),
        "accepted_200": traffic.accepted,
        "new_messages": len(repeats),
        "new_message_notifications": len(message_ms),
        "new_message_lost": len(repeats) - len(message_ms),
        "new_message_p50_ms": pct(message_ms, 0.5),
        "new_message_p99_ms": pct(message_ms, 0.99),
        "new_message_max_ms": pct(message_ms, 1.0),
        "p50_first_tenth_ms": pct(in_order[:tenth], 0.5),
        "p50_last_tenth_ms": pct(in_order[-tenth:], 0.5),
        "to_crm_p50_ms": pct(to_crm, 0.5),
        "to_crm_p99_ms": pct(to_crm, 0.99),
        "crm_to_chat_p50_ms": pct(crm_to_chat, 0.5),
        "crm_to_chat_p99_ms": pct(crm_to_chat, 0.99),
        "new_leads": len(leads),
        "lead_notifications": len(lead_ms),
        "lead_lost": len(leads) * len(chats) - len(lead_ms),
        "lead_p50_ms": pct(lead_ms, 0.5),
        "lead_p99_ms": pct(lead_ms, 0.99),
        "duplicates": duplicates,
        "telegram_429": limited,
        "load_before": load,
        "managers": len(chats),
        "replicas": args.replicas,
        "global_pace": args.global_pace,
        "fake_global": args.fake_global,
    }


# ---------------------------------------------------------------------------- throughput


async def throughput(args: argparse.Namespace, paced: bool) -> dict[str, Any]:
    tag = secrets.token_hex(4)
    schema = f"notifier_nb_{tag}"
    async with stack() as running:
        running.schemas.append(schema)
        nats_url = running.start_nats()
        nc = await nats.connect(nats_url)
        try:
            await ensure_streams(nc.jetstream())
            with telegram_fake(per_chat=paced, global_per_second=30.0 if paced else 0) as tg:
                await asyncio.to_thread(notifier_migrate.upgrade_sync, DB_URL, schema)
                chats = {user: 900_000_000 + user for user in range(1, args.chats + 1)}
                conn = await asyncpg.connect(DB_URL)
                try:
                    await conn.executemany(
                        f'INSERT INTO "{schema}".links (user_id, chat_id, name, role, linked_at) '
                        "VALUES ($1, $2, $3, 'manager', now())",
                        [(user, chat, f"Manager {user}") for user, chat in chats.items()],
                    )
                finally:
                    await conn.close()
                for chat in chats.values():
                    tg.fake.add_chat(chat, first_name="Manager")
                ports = [free_port() for _ in range(args.throughput_replicas)]
                procs = [
                    running.start(
                        "notifier",
                        {
                            **base_env(nats_url, tag),
                            "PORT": str(port),
                            "DB_SCHEMA": schema,
                            "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
                            "TELEGRAM_API_URL": tg.url,
                            # No update arrives in this part; polling keeps the webhook's
                            # "no secret" error line out of the output.
                            "TELEGRAM_MODE": "polling",
                            "TELEGRAM_PER_CHAT_PER_SECOND": "1" if paced else "0",
                            "TELEGRAM_GLOBAL_PER_SECOND": "30" if paced else "0",
                        },
                    )
                    for port in ports
                ]
                for port, proc in zip(ports, procs, strict=True):
                    await wait_ready(f"http://127.0.0.1:{port}", proc)
                count = args.paced_events if paced else args.relaxed_events
                users = list(chats)
                events = [new_message(i, users[i % len(users)]) for i in range(count)]
                load = await load_average()
                publisher = EventPublisher(nc)
                cpu_before = sum(cpu_seconds(proc.pid) for proc in procs)
                published = time.time()
                for start in range(0, count, 500):
                    await publisher.publish_many((e.subject, e) for e in events[start : start + 500])
                published_in = time.time() - published
                timeout = count / (25.0 if paced else 100.0) + 60
                with contextlib.suppress(SystemExit):
                    await until(lambda: len(tg.fake.sent()) >= count, "all delivered", timeout, 0.5)
                arrivals = sorted(message.at for message in tg.fake.sent())
                cpu = sum(cpu_seconds(proc.pid) for proc in procs) - cpu_before
                limited = sum(1 for call in tg.fake.calls("sendMessage") if call.status == 429)
                running.stop_processes()  # before the fake stops: no "cannot connect" lines
        finally:
            await nc.close()
    low, high = int(0.1 * (len(arrivals) - 1)), int(0.9 * (len(arrivals) - 1))
    span = arrivals[high] - arrivals[low] if arrivals else 0.0
    rate = (high - low) / span if span > 0 else None
    return {
        "replicas": args.throughput_replicas,
        "pacing": "1/s per chat, 30/s per replica" if paced else "off",
        "fake_limits": "Telegram's (1/s per chat, burst 5; 30/s, burst 30)" if paced else "none",
        "chats": len(chats),
        "events": count,
        "published_in_s": round(published_in, 2),
        "received": len(arrivals),
        "lost": count - len(arrivals),
        "rate_per_s": round(rate, 1) if rate else None,
        "of_limit_30": f"{rate / 30:.0%}" if rate and paced else None,
        "publish_to_last_s": round(arrivals[-1] - published, 1) if arrivals else None,
        "telegram_429": limited,
        "notifier_cpu_ms_per_notification": round(cpu * 1000 / len(arrivals), 2) if arrivals else None,
        "load_before": load,
    }


def new_message(i: int, user: int) -> MessageReceived:
    deal = 1_000_000 + i
    return MessageReceived(
        producer="crm",
        data=MessageReceivedData(
            message_id=deal,
            mid=f"m_bench_{i}",
            deal_id=deal,
            conversation_id=deal,
            kind="text",
            text=f"Question #r{i} about my order",
            sent_at=datetime.now(UTC),
            is_first_message=False,
            deal_stage="new",
            assignee_id=user,
            contact=ContactRef(id=deal, platform="messenger", external_id=f"psid{deal}", display_name=f"Customer {i}"),
        ),
    )


# ---------------------------------------------------------------------------- main


def print_latency(rows: list[dict[str, Any]]) -> None:
    print("\nwebhook POST -> notification at the Telegram fake (ms)")
    print(
        f"{'run':>4} {'rate/s':>6} {'webhooks':>8} {'new msg p50':>11} {'p99':>7} {'max':>7} {'lost':>5}"
        f" {'leads':>5} {'lead p50':>8} {'p99':>7} {'lost':>5} {'dup':>4} {'429':>4}"
        f" {'1st/last tenth p50':>18} {'->crm p50/p99':>14} {'crm->chat p50/p99':>18}  load before"
    )
    for i, r in enumerate(rows, 1):
        print(
            f"{i:>4} {r['rate']:>6} {r['webhooks']:>8} {r['new_message_p50_ms']!s:>11} {r['new_message_p99_ms']!s:>7}"
            f" {r['new_message_max_ms']!s:>7} {r['new_message_lost']:>5} {r['new_leads']:>5} {r['lead_p50_ms']!s:>8}"
            f" {r['lead_p99_ms']!s:>7} {r['lead_lost']:>5} {r['duplicates']:>4} {r['telegram_429']:>4}"
            f" {_pair(r, 'p50_first_tenth_ms', 'p50_last_tenth_ms'):>18}"
            f" {_pair(r, 'to_crm_p50_ms', 'to_crm_p99_ms'):>14}"
            f" {_pair(r, 'crm_to_chat_p50_ms', 'crm_to_chat_p99_ms'):>18}  {r['load_before']}"
        )


def _pair(row: dict[str, Any], a: str, b: str) -> str:
    return f"{row[a]}/{row[b]}"


def print_throughput(rows: list[dict[str, Any]]) -> None:
    print("\nnotifications/s to linked chats, as the Telegram fake receives them")
    print(
        f"{'replicas':>8} {'pacing':>32} {'chats':>6} {'events':>7} {'received':>8} {'lost':>5} {'rate/s':>7} {'of 30/s':>8}"
        f" {'429':>5} {'CPU ms/notif.':>13}  load before"
    )
    for r in rows:
        print(
            f"{r['replicas']:>8} {r['pacing']:>32} {r['chats']:>6} {r['events']:>7} {r['received']:>8} {r['lost']:>5}"
            f" {r['rate_per_s']!s:>7} {r['of_limit_30'] or '-':>8} {r['telegram_429']:>5}"
            f" {r['notifier_cpu_ms_per_notification']!s:>13}  {r['load_before']}"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--part", choices=["latency", "throughput", "all"], default="all")
    parser.add_argument("--runs", type=int, default=1, help="repeat each part (medians are up to the reader)")
    parser.add_argument("--rate", type=float, default=50.0, help="webhooks per second (latency)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured seconds (latency)")
    parser.add_argument("--warmup", type=float, default=10.0, help="warm-up seconds (latency)")
    parser.add_argument("--managers", type=int, default=200)
    parser.add_argument("--deals", type=int, default=2, help="conversations per manager")
    parser.add_argument("--lead-every", type=float, default=10.0, help="seconds between new customers (0: none)")
    parser.add_argument("--replicas", type=int, default=1, help="notifier processes (latency)")
    parser.add_argument("--global-pace", type=float, default=0.0, help="TELEGRAM_GLOBAL_PER_SECOND (latency; 0 off)")
    parser.add_argument("--fake-global", type=float, default=0.0, help="the fake's bot-wide limit/s (latency; 0 off)")
    parser.add_argument("--chats", type=int, default=1000, help="linked chats (throughput)")
    parser.add_argument("--throughput-replicas", type=int, default=1, help="notifier processes (throughput)")
    parser.add_argument("--paced-events", type=int, default=1200)
    parser.add_argument("--relaxed-events", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=None, help="of the customers' ids (default: random)")
    args = parser.parse_args()
    latencies: list[dict[str, Any]] = []
    throughputs: list[dict[str, Any]] = []
    for run in range(args.runs):
        if args.part in ("latency", "all"):
            row = await latency(args)
            log(f"latency run {run + 1}:", row)
            latencies.append(row)
        if args.part in ("throughput", "all"):
            for paced in (True, False):
                row = await throughput(args, paced)
                log(f"throughput run {run + 1}:", row)
                throughputs.append(row)
    if latencies:
        print_latency(latencies)
        if len(latencies) > 1:
            p99 = [r["new_message_p99_ms"] for r in latencies if r["new_message_p99_ms"] is not None]
            print(f"median of new-message p99: {statistics.median(p99)} ms")
    if throughputs:
        print_throughput(throughputs)


if __name__ == "__main__":
    uvloop.run(main())

"""The web app's figures at a million deals, in headless Chromium on this machine.

``make bench-web`` prints:

* the JavaScript shipped: gzip bytes of every script in ``web/dist`` and of those the first
  page loads (the entry and its modulepreloads; pages used less often load later);
* time from pressing "Sign in" to a usable inbox (its first rows shown) and to a usable
  pipeline (every stage column's first cards shown), for an admin (who sees all million
  deals) and a manager, each measured ``BENCH_LOGINS`` times in a fresh browser context
  (first run with an empty cache reported apart); goal 1 s;
* time from a webhook posted to ingest to the message visible in a browser that has the
  deal open, p50/p99 over ``BENCH_WEBHOOKS`` (50) webhooks sent one after another; goal
  p99 1 s;
* the inbox's two deal lists (awaiting reply, the rest; with their unread counts) through
  crm's HTTP API, p50/p95 of ``BENCH_LIST_CALLS`` (40) calls per list and persona.

The open deals waiting for a reply get message histories first (``add_inbox_messages``,
once), so the unread counts are counted over real rows.

The database is bench/crm_bench.py's (``BENCH_DB``, default ``jggl_crm_bench``): an existing
one is reused (``BENCH_REUSE``, default 1 here), otherwise it is generated (several
minutes, ~1.6 GB). The admin (user 1) and the first manager (user 2) get known passwords.
ingest and crm run as processes (jggl_common.e2e.Cluster: a private JetStream server) with
crm on that database and serving ``web/dist``; Chromium is Debian's ``/usr/bin/chromium``
driven by Playwright. ``BENCH_JSON`` appends the figures as one JSON line.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("BENCH_REUSE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg
import crm_bench
import httpx
from playwright.sync_api import Browser, Page, sync_playwright

from crm.auth.passwords import Passwords
from jggl_common.e2e import APP_SECRET, Cluster
from jggl_sandbox.meta_webhooks import signed, webhook

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "web" / "dist"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
LOGINS = int(os.environ.get("BENCH_LOGINS", "5"))
WEBHOOKS = int(os.environ.get("BENCH_WEBHOOKS", "50"))
LIST_CALLS = int(os.environ.get("BENCH_LIST_CALLS", "40"))
PASSWORD = "Bench-Web-Pass-1"  # noqa: S105 (a scratch database)
PERSONAS = {"admin": (1, "admin@bench.test"), "manager": (2, "manager1@bench.test")}
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000


def say(message: str) -> None:
    print(f"[bench-web] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------- the JavaScript


def javascript() -> dict[str, int]:
    """gzip bytes (level 6, as a web server's default) of all scripts and of the first page's."""

    def gz(path: Path) -> int:
        return len(gzip.compress(path.read_bytes(), compresslevel=6))

    scripts = sorted((DIST / "assets").glob("*.js"))
    index = (DIST / "index.html").read_text(encoding="utf-8")
    first = set(re.findall(r'(?:src|href)="/?(assets/[^"]+\.js)"', index))
    css = sorted((DIST / "assets").glob("*.css"))
    return {
        "js_files": len(scripts),
        "js_gzip_all": sum(gz(p) for p in scripts),
        "js_raw_all": sum(p.stat().st_size for p in scripts),
        "js_gzip_first_page": sum(gz(DIST / f) for f in first),
        "css_gzip": sum(gz(p) for p in css),
    }


# ------------------------------------------------------------------------- the database


async def prepare_database() -> None:
    """bench/crm_bench.py's database, generated unless present; known passwords for two users."""
    if crm_bench.REUSE and await crm_bench._exists():
        say(f"reusing the generated database {crm_bench.DB}")
        engine = crm_bench.create_engine(f"{crm_bench.PG}/{crm_bench.DB}", crm_bench.SCHEMA, pool_size=1)
        try:
            await crm_bench._migrate(engine)
            await crm_bench._create_missing_indexes(engine)
        finally:
            await engine.dispose()
    else:
        say(f"generating {crm_bench.DEALS:,} deals into {crm_bench.DB} (once; BENCH_REUSE=1 keeps it)")
        started = time.perf_counter()
        await crm_bench._recreate_database()
        engine = crm_bench.create_engine(f"{crm_bench.PG}/{crm_bench.DB}", crm_bench.SCHEMA, pool_size=1)
        try:
            await crm_bench._migrate(engine)
        finally:
            await engine.dispose()
        await crm_bench.generate(crm_bench.DEALS)
        say(f"generated in {time.perf_counter() - started:.0f}s")
    digest = await Passwords(concurrency=1).hash(PASSWORD)
    conn = await asyncpg.connect(f"{crm_bench.PG}/{crm_bench.DB}")
    try:
        await add_inbox_messages(conn)
        await conn.execute(
            f'UPDATE "{crm_bench.SCHEMA}".users SET password_hash = $1 WHERE id = ANY($2::int[])',
            digest,
            [user_id for user_id, _ in PERSONAS.values()],
        )
        deals = await conn.fetchval(f'SELECT count(*) FROM "{crm_bench.SCHEMA}".deals')
        say(f"{deals:,} deals in {crm_bench.DB}")
    finally:
        await conn.close()


INBOX_MID_PREFIX = "bench.inbox."


async def add_inbox_messages(conn: asyncpg.Connection) -> None:
    """The histories of the conversations waiting for a reply, which the inbox counts unread.

    crm_bench generates deals without messages. Every open deal whose customer waits gets
    a short answered history (a question and a reply before the wait) and its unanswered
    messages: mostly a few, one in ten 20-60, one in fifty 100-200 (past the count's cap);
    a third of them were read part of the way (``manager_read_at``). Done once (the
    messages are recognised by their ids), in SQL.
    """
    schema = crm_bench.SCHEMA
    if await conn.fetchval(
        f'SELECT EXISTS (SELECT 1 FROM "{schema}".messages WHERE mid LIKE $1)', f"{INBOX_MID_PREFIX}%"
    ):
        return
    started = time.perf_counter()
    await conn.execute(f'SET search_path TO "{schema}"')
    await conn.execute(
        """
        CREATE TEMP TABLE waiting AS
        SELECT id, conversation_id, awaiting_reply_since AS since,
               greatest(last_message_at, awaiting_reply_since) AS until,
               CASE WHEN r < 0.02 THEN 100 + floor(random() * 100)::int
                    WHEN r < 0.12 THEN 20 + floor(random() * 40)::int
                    ELSE 1 + floor(random() * 5)::int END AS unanswered
        FROM (SELECT *, random() AS r FROM deals WHERE status = 'open' AND awaiting_reply_since IS NOT NULL) d
        """
    )
    await conn.execute(
        f"""
        INSERT INTO messages (conversation_id, deal_id, mid, direction, kind, text, status, sent_at, created_at,
                              author_label, is_edited, edit_count, is_deleted)
        SELECT w.conversation_id, w.id, '{INBOX_MID_PREFIX}' || w.id || '.q', 'in', 'text',
               'Здравствуйте, есть в наличии?', 'received', w.since - interval '2 hours', w.since - interval '2 hours',
               NULL, false, 0, false
        FROM waiting w
        UNION ALL
        SELECT w.conversation_id, w.id, '{INBOX_MID_PREFIX}' || w.id || '.a', 'out', 'text',
               'Да, есть. Какой размер?', 'sent', w.since - interval '1 hour', w.since - interval '1 hour', 'Meta inbox',
               false, 0, false
        FROM waiting w
        UNION ALL
        SELECT w.conversation_id, w.id, '{INBOX_MID_PREFIX}' || w.id || '.' || n, 'in', 'text',
               'Сообщение ' || n, 'received',
               w.since + (w.until - w.since) * (n - 1) / greatest(w.unanswered - 1, 1),
               w.since + (w.until - w.since) * (n - 1) / greatest(w.unanswered - 1, 1), NULL, false, 0, false
        FROM waiting w, generate_series(1, w.unanswered) AS n
        """
    )
    # A third were opened part of the way through: the first half of their messages is read.
    await conn.execute(
        """
        UPDATE deals d SET manager_read_at = w.since + (w.until - w.since) / 2
        FROM waiting w WHERE w.id = d.id AND w.id % 3 = 0 AND w.unanswered > 1
        """
    )
    await conn.execute(
        "UPDATE conversations c SET last_inbound_at = w.until FROM waiting w WHERE c.id = w.conversation_id"
    )
    await conn.execute("ANALYZE messages")
    count = await conn.fetchval("SELECT count(*) FROM messages")
    say(f"inbox histories: {count:,} messages in {time.perf_counter() - started:.0f}s")


# ------------------------------------------------------------------------- the API

INBOX_LISTS = {
    "awaiting": {"status": "open", "awaiting_reply": "true", "sort": "-last_message_at", "limit": 30},
    "recent": {"status": "open", "awaiting_reply": "false", "sort": "-last_message_at", "limit": 30},
}
"""The two lists the inbox asks for first (web/src/features/inbox/filters.ts), as it asks."""


def inbox_lists(base: str) -> dict[str, Any]:
    """The inbox's lists through crm's HTTP API (with their unread counts), per persona:
    p50/p95 of ``BENCH_LIST_CALLS`` calls after one unmeasured call."""
    figures: dict[str, Any] = {}
    for persona, (_, email) in PERSONAS.items():
        with httpx.Client(base_url=base, timeout=30.0) as client:
            token = client.post("/api/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            for name, params in INBOX_LISTS.items():
                timings = []
                for run in range(LIST_CALLS + 1):
                    started = time.perf_counter()
                    client.get("/api/deals", params=params).raise_for_status()
                    if run:
                        timings.append((time.perf_counter() - started) * 1000)
                timings.sort()
                key = f"{persona} inbox {name}"
                figures[key] = {"p50_ms": statistics.median(timings), "p95_ms": timings[int(len(timings) * 0.95) - 1]}
                say(f"{key} list: p50 {figures[key]['p50_ms']:.1f} ms, p95 {figures[key]['p95_ms']:.1f} ms")
    return figures


# ------------------------------------------------------------------------- the browser


def sign_in(browser: Browser, base: str, email: str, then: str) -> tuple[float, float, Page]:
    """Seconds from pressing "Sign in" to the page ``then`` being usable, of which the
    sign-in request itself (the password check), and the page."""
    context = browser.new_context(base_url=base, locale="en-GB", viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"/login?next={then}")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    signed_in: list[float] = []
    page.on(
        "response",
        lambda r: signed_in.append(time.perf_counter()) if r.url.endswith("/api/auth/session") else None,
    )
    started = time.perf_counter()
    page.get_by_role("button", name="Sign in").click()
    if then == "/inbox":
        page.locator(".deal-row").first.wait_for(state="visible")
    else:
        # Every stage column has its first cards (or says it is empty).
        page.wait_for_function(
            """() => {
                const cols = [...document.querySelectorAll('section[aria-labelledby^="col-"]')];
                return cols.length > 0 && cols.every(c => c.querySelector('.deal-card, .empty, .muted'));
            }""",
            polling="raf",
        )
        page.locator(".deal-card").first.wait_for(state="visible")
    done = time.perf_counter()
    return done - started, (signed_in[0] - started) if signed_in else 0.0, page


def time_to_usable(browser: Browser, base: str) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for persona, (_, email) in PERSONAS.items():
        for then in ("/inbox", "/pipeline"):
            runs, after = [], []
            for _ in range(LOGINS):
                seconds, session, page = sign_in(browser, base, email, then)
                runs.append(seconds)
                after.append(seconds - session)
                page.context.close()
            key = f"{persona} {then.strip('/')}"
            figures[key] = {
                "first_s": runs[0],
                "p50_s": statistics.median(runs[1:] or runs),
                "max_s": max(runs),
                "after_session_p50_s": statistics.median(after[1:] or after),
                "after_session_max_s": max(after),
            }
            f = figures[key]
            say(
                f"{key}: from 'Sign in' first {runs[0]:.2f}s, then p50 {f['p50_s']:.2f}s, max {max(runs):.2f}s;"
                f" after the session answer p50 {f['after_session_p50_s']:.2f}s, max {max(after):.2f}s"
            )
    return figures


def webhook_to_browser(browser: Browser, base: str, ingest: str, admin: httpx.Client) -> dict[str, Any]:
    page_id = f"7{secrets.randbelow(10**12):012d}"
    psid = f"9{secrets.randbelow(10**14):014d}"
    clock = [int(time.time() * 1000)]

    def send(text: str) -> None:
        clock[0] += 1
        item = {
            "sender": {"id": psid},
            "recipient": {"id": page_id},
            "timestamp": clock[0],
            "message": {"mid": f"m_bench_{secrets.token_hex(8)}", "text": text},
        }
        request = signed(webhook("messenger", page_id, [item], clock[0]), APP_SECRET)
        answer = httpx.post(ingest + "/webhooks/meta", content=request.body, headers=request.headers)
        answer.raise_for_status()

    send("bench: first message")
    deadline = time.monotonic() + 60
    deal_id = None
    while deal_id is None and time.monotonic() < deadline:
        found = admin.get("/api/search", params={"q": "bench first message"}).json()["items"]
        deal_id = found[0]["id"] if found else None
        if deal_id is None:
            time.sleep(0.2)
    if deal_id is None:
        raise RuntimeError("the bench customer's deal never appeared")
    _, _, page = sign_in(browser, base, PERSONAS["admin"][1], "/inbox")
    page.goto(f"/deals/{deal_id}")
    page.get_by_text("bench: first message").wait_for()
    page.locator(".live.live-live").wait_for()
    # Records, in the page, when each awaited text first appears (wall clock, as the sender's).
    page.evaluate(
        """() => {
            window.__wanted = new Set(); window.__seenAt = {};
            const check = () => {
                const text = document.body.textContent;
                for (const w of window.__wanted) if (text.includes(w)) { window.__seenAt[w] = Date.now(); window.__wanted.delete(w); }
            };
            new MutationObserver(check).observe(document.body, {subtree: true, childList: true, characterData: true});
        }"""
    )
    latencies = []
    for i in range(WEBHOOKS):
        text = f"bench message {i} {secrets.token_hex(3)}"
        page.evaluate("(t) => window.__wanted.add(t)", text)
        sent_at = time.time() * 1000
        send(text)
        page.wait_for_function("(t) => window.__seenAt[t] !== undefined", arg=text, timeout=WAIT_MS)
        latencies.append((page.evaluate("(t) => window.__seenAt[t]", text) - sent_at) / 1000)
    page.context.close()
    ordered = sorted(latencies)
    say("slowest: " + ", ".join(f"#{latencies.index(v)} {v * 1000:.0f} ms" for v in ordered[-4:]))
    figures = {
        "webhooks": len(latencies),
        "p50_s": ordered[len(ordered) // 2],
        "p99_s": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max_s": ordered[-1],
    }
    say(f"webhook -> browser: p50 {figures['p50_s'] * 1000:.0f} ms, p99 {figures['p99_s'] * 1000:.0f} ms")
    return figures


def main() -> int:
    if not Path(CHROMIUM).exists():
        say(f"{CHROMIUM} is missing: run scripts/bootstrap.sh (make install)")
        return 1
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_web.py")], check=True)
    js = javascript()
    say(
        f"JavaScript: {js['js_gzip_all']:,} B gzip in {js['js_files']} files; first page {js['js_gzip_first_page']:,} B"
    )
    asyncio.run(prepare_database())
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="bench-web-nats-")))
    database = {"DATABASE_URL": f"{crm_bench.PG}/{crm_bench.DB}", "DB_SCHEMA": crm_bench.SCHEMA}
    try:
        ingest = cluster.start("ingest")
        # The API timings call faster than a bearer client may (60 a minute): not what is measured.
        limits = {"API_RATE_PER_MINUTE": "100000", "API_RATE_BURST": "10000"}
        crm = cluster.start("crm", WEB_DIST=str(DIST), LOG_LEVEL="WARNING", **database, **limits)
        cluster.wait_ready()
        lists = inbox_lists(crm)
        admin = httpx.Client(base_url=crm, timeout=30.0)
        token = admin.post("/api/auth/login", json={"email": PERSONAS["admin"][1], "password": PASSWORD})
        admin.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
            usable = time_to_usable(browser, crm)
            live = webhook_to_browser(browser, crm, ingest, admin)
            browser.close()
    finally:
        cluster.close()
    figures = {
        "javascript": js,
        "inbox_lists": lists,
        "time_to_usable": usable,
        "webhook_to_browser": live,
        "logins_per_case": LOGINS,
    }
    print(json.dumps(figures, indent=2))
    if os.environ.get("BENCH_JSON"):
        with open(os.environ["BENCH_JSON"], "a", encoding="utf-8") as out:
            out.write(json.dumps({"bench": "web", "at": time.time(), **figures}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A manager works a lead from Telegram, with every service as a process: ingest, crm and
a notifier polling the sandbox's Telegram fake (the real aiogram client), the Graph fake
for the Send API, a private JetStream server, real PostgreSQL and Redis.

A customer writes → the manager's chat gets the new lead with the text and the buttons;
"Take" → crm assigns the deal (read back through crm's API) and the bot says so; "Reply"
and a text → the Graph fake receives the Send API call and the bot confirms; a reply to a
customer who last wrote two days ago → crm refuses and the bot tells why.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest

from crm import migrate as crm_migrate
from crm.cli import create_admin
from jggl_common.contracts import link_code_hash
from jggl_common.testing import TEST_DATABASE_URL, TEST_REDIS_URL, free_port, start_nats_server
from jggl_sandbox.graph_fake import GraphFakeServer
from jggl_sandbox.meta_webhooks import Customer, signed, webhook
from jggl_sandbox.telegram_fake import TelegramFakeServer
from notifier import migrate as notifier_migrate

pytestmark = pytest.mark.xdist_group("e2e")

APP_SECRET = "e2e-app-secret"
BOT_TOKEN = "434343:e2e-actions-token"
PASSWORD = "Correct-Horse-Battery-9"
T = TypeVar("T")


def _eventually(check: Callable[[], T | None], what: str, timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout}s (last seen: {last!r})")


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def _query(sql: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(TEST_DATABASE_URL)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


@dataclass
class System:
    urls: dict[str, str]
    telegram: TelegramFakeServer
    graph: GraphFakeServer
    notifier_schema: str
    admin_email: str
    page: str

    def login(self, email: str) -> httpx.Client:
        client = httpx.Client(base_url=self.urls["crm"], timeout=10.0)
        answer = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        return client

    def said(self, chat: int, count: int, what: str) -> list[str]:
        """The chat's messages as the user sees them, once there are ``count``."""
        sent = _eventually(lambda: (s := self.telegram.fake.sent(chat)) and len(s) >= count and s, what)
        return [message.plain_text for message in sent]

    def buttons(self, chat: int) -> dict[str, str]:
        """The newest message's buttons: text → callback data or URL."""
        markup = self.telegram.fake.sent(chat)[-1].reply_markup or {}
        return {b["text"]: b.get("callback_data") or b["url"] for row in markup["inline_keyboard"] for b in row}

    def customer_writes(self, name: str, text: str, *, at_ms: int) -> Customer:
        customer = Customer.new("messenger", random.Random(secrets.randbits(64)), page_id=self.page)
        first, _, last = name.partition(" ")
        self.graph.fake.add_profile(customer.user_id, first_name=first, last_name=last, name=name)
        body = webhook("messenger", self.page, [customer.text(text, timestamp_ms=at_ms)], at_ms)
        request = signed(body, APP_SECRET)
        answer = httpx.post(self.urls["ingest"] + "/webhooks/meta", content=request.body, headers=request.headers)
        assert answer.status_code == 200, answer.text
        return customer


@pytest.fixture
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    nats_proc, nats_port = start_nats_server(tmp_path_factory.mktemp("js"))
    tag = secrets.token_hex(4)
    crm_schema, notifier_schema = f"crm_e2e_{tag}", f"notifier_e2e_{tag}"
    admin_email = f"admin.{tag}@e2e.local"
    base = {
        **os.environ,
        "APP_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "NATS_URL": f"nats://127.0.0.1:{nats_port}",
        "REDIS_URL": TEST_REDIS_URL,
        "DATABASE_URL": TEST_DATABASE_URL,
        "APP_URL": "http://localhost:8000",
        "META_APP_SECRET": APP_SECRET,
        "SETTINGS_BUCKET": f"SETTINGS_{tag}",
        "LOG_LEVEL": "WARNING",
    }
    telegram = TelegramFakeServer(tokens={BOT_TOKEN}, rate_limits=False)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    with GraphFakeServer() as graph, telegram:
        ports = {name: free_port() for name in ("ingest", "crm", "notifier")}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        envs = {
            "ingest": {**base, "PORT": str(ports["ingest"])},
            "crm": {
                **base,
                "PORT": str(ports["crm"]),
                "DB_SCHEMA": crm_schema,
                "META_GRAPH_URL": graph.url,
                "META_ACCESS_TOKEN": "e2e-page-token",
            },
            "notifier": {
                **base,
                "PORT": str(ports["notifier"]),
                "DB_SCHEMA": notifier_schema,
                "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
                "TELEGRAM_API_URL": telegram.url,
                "TELEGRAM_MODE": "polling",
            },
        }
        try:
            notifier_migrate.upgrade_sync(TEST_DATABASE_URL, notifier_schema)
            crm_migrate.upgrade_sync(TEST_DATABASE_URL, crm_schema)
            for name in ("notifier", "ingest", "crm"):
                procs[name] = subprocess.Popen([sys.executable, "-m", name], env=envs[name])
            asyncio.run(create_admin(TEST_DATABASE_URL, crm_schema, email=admin_email, password=PASSWORD, name="Ada"))
            for name, proc in procs.items():
                _wait_ready(urls[name], proc)
            yield System(urls, telegram, graph, notifier_schema, admin_email, f"1000{secrets.randbelow(10**9)}")
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            nats_proc.terminate()
            nats_proc.wait(10)

            async def drop() -> None:
                conn = await asyncpg.connect(TEST_DATABASE_URL)
                try:
                    for schema in (crm_schema, notifier_schema):
                        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                finally:
                    await conn.close()

            asyncio.run(drop())


def test_a_manager_takes_and_answers_a_lead_from_telegram(system: System) -> None:
    fake = system.telegram.fake
    admin = system.login(system.admin_email)
    email = f"mia.{secrets.token_hex(4)}@e2e.local"
    created = admin.post("/api/users", json={"email": email, "name": "Mia Manager", "password": PASSWORD})
    assert created.status_code == 201, created.text
    mia_id, mia = int(created.json()["id"]), system.login(email)

    # Linking: a code from crm's API, sent to the bot.
    code = mia.post("/api/me/telegram-link").json()["code"]
    _eventually(
        lambda: _query(
            f'SELECT 1 FROM "{system.notifier_schema}".link_codes WHERE code_hash = $1', link_code_hash(code)
        ),
        "the notifier learning the code",
    )
    chat = 700_000_000 + secrets.randbelow(10**8)
    fake.user_sends(chat, f"/start {code}", first_name="Mia")
    assert system.said(chat, 1, "the answer to /start")[0].startswith("✅ Linked, Mia Manager!")

    # A customer writes: the new lead, with the text and the buttons.
    now_ms = int(time.time() * 1000)
    customer = system.customer_writes("Olha Melnyk", "Hi! Is the green backpack <still> available?", at_ms=now_ms)
    lead = system.said(chat, 2, "the new lead")[1]
    # crm never waits for the Graph profile: the first events may name the customer by id.
    olha = ("Olha Melnyk", customer.user_id)
    assert lead.split("\n")[:3] in (["🆕 New lead", f"{who} · Messenger", "Stage: new"] for who in olha), lead
    assert lead.endswith("\n\nHi! Is the green backpack <still> available?"), lead
    buttons = system.buttons(chat)
    assert set(buttons) == {"Open in CRM", "Take", "Reply"}
    deal_id = int(buttons["Take"].split(":")[1])
    assert buttons["Open in CRM"] == f"http://localhost:8000/deals/{deal_id}"

    # Take: crm assigns the deal to Mia, the bot says so.
    fake.press_button(chat, f"take:{deal_id}")
    assert system.said(chat, 3, "the take confirmed")[2] in (f"✅ The deal is yours: {who}" for who in olha)
    assert [a["text"] for a in fake.callback_answers()] == ["Taking…"]
    assert admin.get(f"/api/deals/{deal_id}").json()["assignee_id"] == mia_id

    # Reply: the text goes to the customer through the Send API, the bot confirms.
    fake.press_button(chat, f"reply:{deal_id}")
    prompt = system.said(chat, 4, "the reply prompt")[3]
    assert prompt in (f"✍️ Write your reply to {who} (/cancel to cancel)" for who in olha)
    fake.user_sends(chat, "Yes! Two left, shall I reserve one?", first_name="Mia")
    texts = system.said(chat, 6, "the reply sent")
    assert texts[4] == "⏳ Sending…"
    assert texts[5] in (f"✅ Sent to {who}" for who in olha)
    (send,) = system.graph.fake.sent_to(system.page)
    assert send["recipient"] == {"id": customer.user_id}
    assert send["message"] == {"text": "Yes! Two left, shall I reserve one?"}
    assert send["messaging_type"] == "RESPONSE"

    # A customer who last wrote two days ago: crm refuses the reply, the bot tells why.
    two_days_ago = now_ms - 2 * 24 * 3600 * 1000
    late = system.customer_writes("Petro Late", "Hello, anyone there?", at_ms=two_days_ago)
    assert system.said(chat, 7, "the second new lead")[6].startswith("🆕 New lead\n")
    late_deal = int(system.buttons(chat)["Reply"].split(":")[1])
    fake.press_button(chat, f"reply:{late_deal}")
    system.said(chat, 8, "the reply prompt")
    fake.user_sends(chat, "Sorry for the wait!", first_name="Mia")
    texts = system.said(chat, 10, "the refusal")
    assert texts[8] == "⏳ Sending…"
    why = "was not sent.\nWhy: The customer last wrote more than 24 hours ago"
    assert any(texts[9].startswith(f"❌ Your reply to {who} {why}") for who in ("Petro Late", late.user_id)), texts[9]
    assert len(system.graph.fake.sent_to(system.page)) == 1

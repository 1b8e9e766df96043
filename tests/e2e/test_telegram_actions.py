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
import random
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from crm.cli import create_admin
from jggl_common.contracts import link_code_hash
from jggl_common.e2e import APP_SECRET, Cluster, eventually
from jggl_common.testing import TEST_DATABASE_URL
from jggl_sandbox.graph_fake import GraphFakeServer
from jggl_sandbox.meta_webhooks import Customer, signed, webhook
from jggl_sandbox.telegram_fake import SentMessage, TelegramFakeServer

pytestmark = pytest.mark.xdist_group("e2e")

BOT_TOKEN = "434343:e2e-actions-token"
PASSWORD = "Correct-Horse-Battery-9"


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
        sent: list[SentMessage] = eventually(
            lambda: s if len(s := self.telegram.fake.sent(chat)) >= count else None, what
        )
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
def system(cluster: Cluster) -> Iterator[System]:
    admin_email = f"admin.{cluster.tag}@e2e.local"
    telegram = TelegramFakeServer(tokens={BOT_TOKEN}, rate_limits=False)
    with GraphFakeServer() as graph, telegram:
        cluster.run("notifier", "migrate")
        cluster.run("crm", "migrate")
        cluster.start("notifier", TELEGRAM_BOT_TOKEN=BOT_TOKEN, TELEGRAM_API_URL=telegram.url, TELEGRAM_MODE="polling")
        cluster.start("ingest")
        cluster.start("crm", META_GRAPH_URL=graph.url, META_ACCESS_TOKEN="e2e-page-token")
        asyncio.run(
            create_admin(TEST_DATABASE_URL, cluster.schema("crm"), email=admin_email, password=PASSWORD, name="Ada")
        )
        cluster.wait_ready()
        page = f"1000{secrets.randbelow(10**9)}"
        yield System(cluster.urls, telegram, graph, cluster.schema("notifier"), admin_email, page)


def test_a_manager_takes_and_answers_a_lead_from_telegram(system: System) -> None:
    fake = system.telegram.fake
    admin = system.login(system.admin_email)
    email = f"mia.{secrets.token_hex(4)}@e2e.local"
    created = admin.post("/api/users", json={"email": email, "name": "Mia Manager", "password": PASSWORD})
    assert created.status_code == 201, created.text
    mia_id, mia = int(created.json()["id"]), system.login(email)

    # Linking: a code from crm's API, sent to the bot.
    code = mia.post("/api/me/telegram-link").json()["code"]
    eventually(
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
    olha = ("Olha Melnyk", "New customer")  # the latter until crm has read the Meta profile
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
    system.customer_writes("Petro Late", "Hello, anyone there?", at_ms=two_days_ago)
    assert system.said(chat, 7, "the second new lead")[6].startswith("🆕 New lead\n")
    late_deal = int(system.buttons(chat)["Reply"].split(":")[1])
    fake.press_button(chat, f"reply:{late_deal}")
    system.said(chat, 8, "the reply prompt")
    fake.user_sends(chat, "Sorry for the wait!", first_name="Mia")
    texts = system.said(chat, 10, "the refusal")
    assert texts[8] == "⏳ Sending…"
    why = "was not sent.\nWhy: The customer last wrote more than 24 hours ago"
    assert any(texts[9].startswith(f"❌ Your reply to {who} {why}") for who in ("Petro Late", "New customer")), texts[9]
    assert len(system.graph.fake.sent_to(system.page)) == 1

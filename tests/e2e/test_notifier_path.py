"""The whole notification path with every service as a process: ingest, crm and two
notifier processes (one schema, the same durable consumers) on private ports, a private
JetStream server, the sandbox's Graph fake and Telegram fake (the real aiogram client in
the notifiers talks to it through ``TELEGRAM_API_URL``).

The notifiers run in webhook mode: each registers ``{APP_URL}/webhooks/telegram`` with
the secret token, so what a user types in the fake reaches them through ingest's
``POST /webhooks/telegram``. Long polling is covered by the notifier's own tests
(``services/notifier/tests/test_update_modes.py``).

Codes expire after 15 minutes in crm and the API cannot shorten that, so an expired code
is announced here the way crm announces codes (``crm.telegram.link_requested`` on the
private server, its expiry in the past) and then typed through the whole webhook path.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import asyncpg
import httpx
import nats
import pytest

from crm import migrate as crm_migrate
from crm.cli import create_admin
from jggl_common.bus import EventPublisher
from jggl_common.contracts import TelegramLinkRequested, TelegramLinkRequestedData, link_code_hash
from jggl_common.e2e import APP_SECRET, Cluster, eventually
from jggl_common.testing import TEST_DATABASE_URL
from jggl_sandbox.graph_fake import GraphFakeServer
from jggl_sandbox.meta_webhooks import Customer, signed, webhook
from jggl_sandbox.telegram_fake import SentMessage, TelegramFakeServer
from notifier import migrate as notifier_migrate

pytestmark = pytest.mark.xdist_group("e2e")

BOT_TOKEN = "424242:e2e-notifier-token"
WEBHOOK_SECRET = "e2e-Telegram_secret-1"
BOT_USERNAME = "jggl_e2e_bot"
PASSWORD = "Correct-Horse-Battery-9"
NOTIFIERS = 2
SETTLE_SECONDS = 1.0
"""After the last expected message arrived: how long a message that should not come gets to
show up before the chat is counted again (a check that nothing more came, not a timing)."""

T = TypeVar("T")


@dataclass
class System:
    """The running system and the handles a test drives it with."""

    urls: dict[str, str]
    telegram: TelegramFakeServer
    graph: GraphFakeServer
    nats_url: str
    notifier_schema: str
    admin_email: str
    cluster: Cluster
    page: str = field(default_factory=lambda: f"1000{secrets.randbelow(10**9)}")
    rng: random.Random = field(default_factory=lambda: random.Random(secrets.randbits(64)))

    # ---------------------------------------------------------------- crm API

    def login(self, email: str) -> httpx.Client:
        client = httpx.Client(base_url=self.urls["crm"], timeout=10.0)
        answer = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        return client

    def create_manager(self, admin: httpx.Client, name: str) -> tuple[int, httpx.Client]:
        email = f"{name.split(maxsplit=1)[0].lower()}.{secrets.token_hex(4)}@e2e.local"
        answer = admin.post("/api/users", json={"email": email, "name": name, "password": PASSWORD})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["id"]), self.login(email)

    def link_code(self, user: httpx.Client) -> str:
        """A code from ``POST /api/me/telegram-link``, once the notifier has it (in real life
        the manager takes seconds to type it; here the test waits for the announcement)."""
        answer = user.post("/api/me/telegram-link")
        assert answer.status_code == 201, answer.text
        code = str(answer.json()["code"])
        assert answer.json()["deep_link"] == f"https://t.me/{BOT_USERNAME}?start={code}"
        eventually(lambda: self._notifier_knows(code), f"the notifier learning code {code}")
        return code

    def _notifier_knows(self, code: str) -> bool:
        async def look() -> bool:
            conn = await asyncpg.connect(TEST_DATABASE_URL)
            try:
                found = await conn.fetchval(
                    f'SELECT 1 FROM "{self.notifier_schema}".link_codes WHERE code_hash = $1', link_code_hash(code)
                )
            finally:
                await conn.close()
            return bool(found)

        return asyncio.run(look())

    def announce_code(self, user_id: int, name: str, code: str, expires_at: datetime) -> None:
        """Publish ``crm.telegram.link_requested`` as crm does (for an expiry the API cannot set)."""

        async def publish() -> None:
            nc = await nats.connect(self.nats_url)
            try:
                event = TelegramLinkRequested(
                    producer="crm",
                    data=TelegramLinkRequestedData(
                        user_id=user_id,
                        name=name,
                        email=f"user{user_id}@e2e.local",
                        role="manager",
                        code_hash=link_code_hash(code),
                        expires_at=expires_at,
                    ),
                )
                await EventPublisher(nc).publish_many([(event.subject, event)])
            finally:
                await nc.close()

        asyncio.run(publish())
        eventually(lambda: self._notifier_knows(code), f"the notifier learning code {code}")

    # ---------------------------------------------------------------- Telegram

    def chat(self) -> int:
        return 700_000_000 + secrets.randbelow(10**8)

    def sent(self, chat_id: int) -> list[SentMessage]:
        return self.telegram.fake.sent(chat_id)

    def types(self, chat_id: int, text: str, first_name: str) -> None:
        """The user of ``chat_id`` types ``text`` to the bot (delivered through ingest)."""
        self.telegram.fake.user_sends(chat_id, text, first_name=first_name)

    def answers(self, chat_id: int, count: int, what: str) -> list[str]:
        """The chat's messages as the user sees them, once there are ``count`` of them."""

        def enough() -> list[SentMessage] | None:
            messages = self.sent(chat_id)
            return messages if len(messages) >= count else None

        return [message.plain_text for message in eventually(enough, what)]

    def link(self, user: httpx.Client, chat_id: int, first_name: str) -> None:
        before = len(self.sent(chat_id))
        code = self.link_code(user)
        self.types(chat_id, f"/start {code}", first_name)
        answer = self.answers(chat_id, before + 1, f"the answer to /start in chat {chat_id}")[before]
        assert answer.startswith("✅ Linked"), answer

    # ---------------------------------------------------------------- Meta

    def customer(self, name: str) -> Customer:
        """A new Messenger customer of the page, whose Graph profile has ``name``."""
        customer = Customer.new("messenger", self.rng, page_id=self.page)
        first, _, last = name.partition(" ")
        self.graph.fake.add_profile(customer.user_id, first_name=first, last_name=last, name=name)
        return customer

    def customer_writes(self, customer: Customer, text: str, *, deliveries: int = 1) -> None:
        """One signed webhook carrying the customer's message, POSTed ``deliveries`` times
        (Meta retries the very same body when an answer is slow)."""
        now_ms = int(time.time() * 1000)
        item = customer.text(text, timestamp_ms=now_ms)
        request = signed(webhook("messenger", self.page, [item], now_ms), APP_SECRET)
        for _ in range(deliveries):
            answer = httpx.post(
                self.urls["ingest"] + "/webhooks/meta", content=request.body, headers=request.headers, timeout=10.0
            )
            assert answer.status_code == 200, answer.text

    def settled(self, chat_id: int) -> list[str]:
        """The chat's messages after giving a stray message time to arrive."""
        time.sleep(SETTLE_SECONDS)
        return [message.plain_text for message in self.sent(chat_id)]

    def notifiers_alive(self) -> bool:
        return all(self.cluster.running(f"notifier{i}") for i in range(NOTIFIERS))


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """ingest, crm and two notifiers as processes on private ports, schemas and NATS."""
    cluster = Cluster(tmp_path_factory.mktemp("js"))
    admin_email = f"admin.{cluster.tag}@e2e.local"
    telegram = TelegramFakeServer(tokens={BOT_TOKEN})
    try:
        with GraphFakeServer() as graph, telegram:
            # The schemas and the first admin from this process (fewer interpreters to start
            # on a machine of two cores).
            notifier_migrate.upgrade_sync(TEST_DATABASE_URL, cluster.schema("notifier"))
            crm_migrate.upgrade_sync(TEST_DATABASE_URL, cluster.schema("crm"))
            ingest = cluster.start("ingest", TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET)
            for i in range(NOTIFIERS):
                cluster.start(
                    "notifier",
                    f"notifier{i}",
                    APP_URL=ingest,  # the bot registers {APP_URL}/webhooks/telegram: ingest's endpoint
                    TELEGRAM_BOT_TOKEN=BOT_TOKEN,
                    TELEGRAM_API_URL=telegram.url,
                    TELEGRAM_MODE="webhook",
                    TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
                )
            cluster.start(
                "crm", META_GRAPH_URL=graph.url, META_ACCESS_TOKEN="e2e-page-token", TELEGRAM_BOT_USERNAME=BOT_USERNAME
            )
            asyncio.run(
                create_admin(TEST_DATABASE_URL, cluster.schema("crm"), email=admin_email, password=PASSWORD, name="Ada")
            )
            cluster.wait_ready()
            hook = ingest + "/webhooks/telegram"
            eventually(lambda: (telegram.fake.webhook or {}).get("url") == hook, "the bot's webhook registered")
            yield System(
                cluster.urls,
                telegram,
                graph,
                cluster.base["NATS_URL"],
                cluster.schema("notifier"),
                admin_email,
                cluster,
            )
    finally:
        cluster.close()


def _new_leads(texts: list[str]) -> list[str]:
    return [text for text in texts if "New lead" in text]


def test_a_manager_links_telegram_with_a_code_from_crm_and_is_unlinked_by_stop_and_deactivation(
    system: System,
) -> None:
    admin = system.login(system.admin_email)
    mia_id, mia = system.create_manager(admin, "Mia Manager")
    mia_chat, intruder_chat, late_chat, admin_chat = (system.chat() for _ in range(4))

    # The code from crm's API, typed in Telegram: linked.
    code = system.link_code(mia)
    system.types(mia_chat, f"/start {code}", "Mia")
    (answer,) = system.answers(mia_chat, 1, "the answer to /start CODE")
    assert answer.startswith("✅ Linked, Mia Manager!"), answer

    # The same code from another Telegram account: refused, and that chat stays unlinked.
    system.types(intruder_chat, f"/start {code}", "Ivan")
    (refusal,) = system.answers(intruder_chat, 1, "the answer to a reused code")
    assert refusal.startswith("❌ This link code was already used."), refusal

    # An expired code (announced as crm would, its expiry passed): refused.
    expired = "EXPRD" + secrets.token_hex(3).upper()
    system.announce_code(mia_id + 10_000, "Late Larry", expired, datetime.now(UTC) - timedelta(minutes=1))
    system.types(late_chat, f"/start {expired}", "Larry")
    (refusal,) = system.answers(late_chat, 1, "the answer to an expired code")
    assert refusal.startswith("⌛ This link code has expired."), refusal

    # The admin links too: a witness that a new lead did reach the linked chats.
    system.link(admin, admin_chat, "Ada")

    # A new lead (nobody assigned) goes to every linked chat: Mia and the admin, not the others.
    first = system.customer("Olena Koval")
    system.customer_writes(first, "Hello! Do you ship to Lviv?")
    system.answers(admin_chat, 2, "the admin's new-lead notification")
    system.answers(mia_chat, 2, "Mia's new-lead notification")
    assert len(_new_leads(system.settled(mia_chat))) == 1
    assert len(system.sent(intruder_chat)) == 1  # the refusal only
    assert len(system.sent(late_chat)) == 1

    # /stop unlinks: the next new lead reaches the admin only.
    system.types(mia_chat, "/stop", "Mia")
    stopped = system.answers(mia_chat, 3, "the answer to /stop")[2]
    assert stopped.startswith("🔕 Your Telegram is unlinked"), stopped
    second = system.customer("Petro Shevchenko")
    system.customer_writes(second, "Hi, what sizes do you have?")
    system.answers(admin_chat, 3, "the admin's second new-lead notification")
    assert len(system.settled(mia_chat)) == 3

    # Linked again, then deactivated by the admin in crm: the goodbye, then nothing more.
    system.link(mia, mia_chat, "Mia")
    deactivated = admin.patch(f"/api/users/{mia_id}", json={"is_active": False})
    assert deactivated.status_code == 200, deactivated.text
    goodbye = system.answers(mia_chat, 5, "the goodbye after deactivation")[4]
    assert goodbye.startswith("🔕 This chat is no longer linked to the CRM"), goodbye
    assert "your CRM account was deactivated" in goodbye
    third = system.customer("Iryna Bondar")
    system.customer_writes(third, "Good evening, is it in stock?")
    admin_texts = system.answers(admin_chat, 4, "the admin's third new-lead notification")
    mia_texts = system.settled(mia_chat)
    assert len(mia_texts) == 5, mia_texts
    assert len(_new_leads(mia_texts)) == 1
    assert len(_new_leads(admin_texts)) == 3
    assert system.notifiers_alive()


def test_a_webhook_delivered_twice_becomes_one_telegram_message_for_the_manager(system: System) -> None:
    admin = system.login(system.admin_email)
    _, max_ = system.create_manager(admin, "Max Manager")
    max_chat = system.chat()
    system.link(max_, max_chat, "Max")

    # A new customer writes; Meta delivers the same signed webhook twice.
    customer = system.customer("Olha Melnyk")
    system.customer_writes(customer, "Hi! Is the blue sofa still available?", deliveries=2)
    texts = system.answers(max_chat, 2, "the new-lead notification")
    new_lead = texts[1]
    assert new_lead.startswith("🆕 New lead"), new_lead
    assert "· Messenger" in new_lead
    # crm announces the deal before the profile fetch ends: its name, or the PSID until then.
    # crm announces the first message before it has read the Meta profile: "New customer" until then
    assert "Olha Melnyk · Messenger" in new_lead or "New customer · Messenger" in new_lead, new_lead
    assert customer.user_id not in new_lead, new_lead
    assert "Hi! Is the blue sofa still available?" in new_lead
    assert system.settled(max_chat) == texts

    # Max takes the deal; once crm knows the customer's name, the customer writes again
    # (twice delivered again): one "new message" notification, with the name and the text.
    deals = max_.get("/api/deals", params={"unassigned": True, "limit": 100}).json()["items"]
    (deal,) = [d for d in deals if d["contact"]["external_id"] == customer.user_id]
    assert max_.post(f"/api/deals/{deal['id']}/take").status_code == 200

    def named() -> bool:
        contact = max_.get(f"/api/deals/{deal['id']}").json()["contact"]
        return bool(contact.get("name") == "Olha Melnyk")

    eventually(named, "the customer's profile name in crm", interval=0.5)
    system.customer_writes(customer, "Can you deliver it on Friday?", deliveries=2)
    texts = system.answers(max_chat, 3, "the new-message notification")
    new_message = texts[2]
    assert new_message.startswith("💬 New message"), new_message
    assert "Olha Melnyk · Messenger" in new_message
    assert "Can you deliver it on Friday?" in new_message
    assert system.settled(max_chat) == texts
    assert system.notifiers_alive()

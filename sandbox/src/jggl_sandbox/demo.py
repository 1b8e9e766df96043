"""``make demo``'s outside world: Meta's Graph API (the fake) and customers who write.

``scripts/run.py --demo`` starts this module beside the services. It serves the Graph fake
(profiles with the customers' names, the Send API, echoes posted back to ingest as Meta
does), waits for ingest and crm, creates the demo's two managers through crm's API, prints
the credentials, and then plays a stream of customers for ``--minutes``:

* a new customer every few seconds, on Messenger or Instagram, writing one to four
  messages a few seconds apart (Russian or English, about sofas, delivery, prices...);
* about a third of them go quiet after that, whatever happens;
* the others wait for the manager: when a reply reaches the Graph fake (a manager pressed
  Send in the web app), the customer reads it, and a few seconds later writes back, up to
  three times, sometimes with a reaction to the manager's message.

After ``--minutes`` the customers stop and the fake keeps serving until SIGTERM/Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from .graph_fake import FakeGraph, GraphFakeServer
from .meta_webhooks import DEFAULT_APP_ID, DEFAULT_INSTAGRAM_ACCOUNT_ID, DEFAULT_PAGE_ID, signed, webhook

__all__ = ["main"]

NAMES = (
    ("Анна", "Смирнова"),
    ("Дмитрий", "Иванов"),
    ("Ольга", "Кузнецова"),
    ("Сергей", "Попов"),
    ("Мария", "Соколова"),
    ("Алексей", "Лебедев"),
    ("Екатерина", "Новикова"),
    ("Игорь", "Морозов"),
    ("Emma", "Wilson"),
    ("Liam", "Brown"),
    ("Sofia", "Garcia"),
    ("Noah", "Miller"),
    ("Olivia", "Davis"),
    ("Lucas", "Martin"),
)

# Each topic: the first messages, then what the customer says to each reply of a manager.
TOPICS_RU = (
    (
        ["Здравствуйте!", "Сколько стоит диван «Осло» серого цвета?", "И есть ли доставка в Казань?"],
        ["Спасибо! А если два дивана, будет скидка?", "Хорошо, беру. Как оплатить?", "Отлично, жду счёт 👍"],
    ),
    (
        ["Добрый день, холодильник Бирюса ещё в наличии?"],
        ["А гарантия какая?", "Понятно. Можно забрать самовывозом сегодня?", "Спасибо, приеду к шести"],
    ),
    (
        ["Привет", "Видела у вас в сторис кресло-качалку", "Сколько стоит?"],
        ["Дороговато… А есть что-то попроще?", "Покажите, пожалуйста, фото", "Беру второе!"],
    ),
    (
        ["Заказ №4512 до сих пор не пришёл, прошла неделя"],
        ["Мне обещали доставку во вторник", "Хорошо, жду звонка курьера", "Получила, спасибо"],
    ),
)
TOPICS_EN = (
    (
        ["Hi there!", "How much is the oak dining table?", "Do you deliver on weekends?"],
        ["Great, can I pay on delivery?", "Perfect, please reserve one for me", "Thanks!"],
    ),
    (
        ["Hello, is the blue armchair still available?"],
        ["What are the dimensions?", "Does it come assembled?", "OK, I'll order it today"],
    ),
    (
        ["Hey", "I ordered a lamp last week and it arrived broken 😕"],
        ["Here is the order number: 88120", "A replacement would be great", "Thank you for the quick help"],
    ),
)


@dataclass
class Customer:
    psid: str
    platform: str  # "messenger" | "instagram"
    name: str
    opening: list[str]
    replies: list[str]
    quiet: bool
    answered: int = 0
    seen_sends: int = 0
    _mid: str = ""


@dataclass
class Demo:
    ingest: str
    crm: str
    app_secret: str
    page_id: str
    ig_account_id: str
    graph: FakeGraph
    rng: random.Random
    customers: list[Customer] = field(default_factory=list)
    sent: int = 0
    failed: int = 0

    def account(self, customer: Customer) -> str:
        return self.ig_account_id if customer.platform == "instagram" else self.page_id

    async def post(self, http: httpx.AsyncClient, customer: Customer, item: dict[str, Any]) -> None:
        now_ms = int(time.time() * 1000)
        request = signed(webhook(customer.platform, self.account(customer), [item], now_ms), self.app_secret)  # type: ignore[arg-type]
        try:
            answer = await http.post(self.ingest + "/webhooks/meta", content=request.body, headers=request.headers)
            if answer.status_code == 200:
                self.sent += 1
            else:
                self.failed += 1
        except httpx.HTTPError:
            self.failed += 1

    async def write(self, http: httpx.AsyncClient, customer: Customer, text: str) -> None:
        now_ms = int(time.time() * 1000)
        customer._mid = f"m_demo_{secrets.token_hex(10)}"
        item = {
            "sender": {"id": customer.psid},
            "recipient": {"id": self.account(customer)},
            "timestamp": now_ms,
            "message": {"mid": customer._mid, "text": text},
        }
        await self.post(http, customer, item)

    async def read(self, http: httpx.AsyncClient, customer: Customer, page_mid: str | None) -> None:
        now_ms = int(time.time() * 1000)
        read: dict[str, Any] = {"mid": page_mid} if customer.platform == "instagram" else {"watermark": now_ms}
        if customer.platform == "instagram" and not page_mid:
            return
        item = {"sender": {"id": customer.psid}, "recipient": {"id": self.account(customer)}, "timestamp": now_ms}
        item["read"] = read
        await self.post(http, customer, item)

    async def react(self, http: httpx.AsyncClient, customer: Customer, page_mid: str) -> None:
        now_ms = int(time.time() * 1000)
        item = {
            "sender": {"id": customer.psid},
            "recipient": {"id": self.account(customer)},
            "timestamp": now_ms,
            "reaction": {"mid": page_mid, "action": "react", "reaction": "love", "emoji": "❤️"},
        }
        await self.post(http, customer, item)

    def new_customer(self) -> Customer:
        platform = self.rng.choice(("messenger", "messenger", "instagram"))
        first, last = self.rng.choice(NAMES)
        russian = first[0] >= "А"
        opening, replies = self.rng.choice(TOPICS_RU if russian else TOPICS_EN)
        psid = f"{'17' if platform == 'instagram' else '9'}{secrets.randbelow(10**14):014d}"
        username = f"{last.lower()}_{secrets.randbelow(1000)}" if not russian else f"user_{secrets.randbelow(10**6)}"
        self.graph.add_profile(psid, first_name=first, last_name=last, name=f"{first} {last}", username=username)
        count = self.rng.randint(1, len(opening))
        customer = Customer(
            psid, platform, f"{first} {last}", opening[:count], list(replies), quiet=self.rng.random() < 0.33
        )
        self.customers.append(customer)
        return customer

    async def play(self, http: httpx.AsyncClient, customer: Customer, stop: asyncio.Event) -> None:
        """One customer: the opening messages, then an answer to each manager's reply (unless quiet)."""
        for text in customer.opening:
            if stop.is_set():
                return
            await self.write(http, customer, text)
            await _sleep(self.rng.uniform(2, 8), stop)
        if customer.quiet:
            return
        while customer.replies and not stop.is_set():
            sends = [s for s in self.graph.sent if s.get("recipient", {}).get("id") == customer.psid]
            if len(sends) > customer.seen_sends:
                customer.seen_sends = len(sends)
                page_mid = str(sends[-1].get("message_id") or "")
                await _sleep(self.rng.uniform(1, 4), stop)
                await self.read(http, customer, page_mid)
                if page_mid and self.rng.random() < 0.25:
                    await self.react(http, customer, page_mid)
                await _sleep(self.rng.uniform(3, 10), stop)
                await self.write(http, customer, customer.replies.pop(0))
            await _sleep(1.0, stop)


async def _sleep(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _wait_ready(url: str, stop: asyncio.Event, timeout: float = 180.0) -> bool:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2.0) as http:
        while time.monotonic() < deadline and not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url + "/readyz")).status_code == 200:
                    return True
            await _sleep(0.5, stop)
    return False


async def _create_managers(crm: str, admin: tuple[str, str], managers: list[tuple[str, str, str]]) -> None:
    async with httpx.AsyncClient(base_url=crm, timeout=10.0) as http:
        login = await http.post("/api/auth/login", json={"email": admin[0], "password": admin[1]})
        login.raise_for_status()
        http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        for email, password, name in managers:
            answer = await http.post(
                "/api/users", json={"email": email, "password": password, "name": name, "role": "manager"}
            )
            if answer.status_code not in (201, 409):
                print(f"[demo] could not create {email}: {answer.status_code} {answer.text}", file=sys.stderr)


async def _run(args: argparse.Namespace, demo: Demo, stop: asyncio.Event) -> None:
    if not (await _wait_ready(args.ingest, stop) and await _wait_ready(args.crm, stop)):
        if not stop.is_set():
            print("[demo] ingest or crm did not become ready; no customers will write", file=sys.stderr)
        await stop.wait()
        return
    admin = tuple(args.admin.split(":", 1))
    managers = [tuple(m.split(":", 2)) for m in args.manager]
    await _create_managers(args.crm, admin, managers)
    lines = [
        "",
        "  JGGL CRM demo: open http://localhost:8000 and sign in as",
        f"    admin    {admin[0]}  /  {admin[1]}",
        *(f"    manager  {email}  /  {password}" for email, password, _ in managers),
        f"  Simulated customers write for {args.minutes:g} minutes; reply to them in the web app.",
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.minutes * 60
    tasks: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(timeout=10.0) as http:
        last_report = time.monotonic()
        while not stop.is_set() and time.monotonic() < deadline:
            task = asyncio.create_task(demo.play(http, demo.new_customer(), stop))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            await _sleep(demo.rng.uniform(args.every * 0.5, args.every * 1.5), stop)
            if time.monotonic() - last_report > 60:
                last_report = time.monotonic()
                print(
                    f"[demo] {len(demo.customers)} customers so far, {demo.sent} webhooks accepted"
                    + (f", {demo.failed} refused" if demo.failed else "")
                    + " — open http://localhost:8000",
                    file=sys.stderr,
                    flush=True,
                )
        if not stop.is_set():
            print("[demo] the simulated customers have stopped; the system runs until Ctrl-C", file=sys.stderr)
            # Customers already talking still answer replies until Ctrl-C.
        await stop.wait()
        for task in tasks:
            task.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jggl_sandbox.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph-host", default="127.0.0.1")
    parser.add_argument("--graph-port", type=int, default=8090)
    parser.add_argument("--ingest", default="http://127.0.0.1:8001", help="ingest's base URL")
    parser.add_argument("--crm", default="http://127.0.0.1:8000", help="crm's base URL")
    parser.add_argument("--app-secret", required=True, help="META_APP_SECRET, to sign the webhooks and echoes")
    parser.add_argument("--page-id", default=DEFAULT_PAGE_ID)
    parser.add_argument("--ig-account-id", default=DEFAULT_INSTAGRAM_ACCOUNT_ID)
    parser.add_argument("--app-id", type=int, default=DEFAULT_APP_ID, help="META_APP_ID carried by echoes")
    parser.add_argument("--admin", required=True, help="email:password of the admin (to create the managers)")
    parser.add_argument("--manager", action="append", default=[], help="email:password:name (repeatable)")
    parser.add_argument("--minutes", type=float, default=20.0, help="how long new customers arrive")
    parser.add_argument("--every", type=float, default=8.0, help="seconds between new customers, on average")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    fake = FakeGraph(
        echo_url=args.ingest + "/webhooks/meta",
        app_secret=args.app_secret,
        app_id=args.app_id,
        instagram_accounts={args.ig_account_id},
    )
    server = GraphFakeServer(fake, host=args.graph_host, port=args.graph_port).start()
    print(f"[demo] Meta Graph fake on {server.url} (echoes to {fake.echo_url})", file=sys.stderr, flush=True)
    demo = Demo(
        args.ingest, args.crm, args.app_secret, args.page_id, args.ig_account_id, fake, random.Random(args.seed)
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await _run(args, demo, stop)

    try:
        asyncio.run(run())
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

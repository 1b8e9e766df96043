"""The web app in a real browser against the running system.

Playwright (its Python package) drives Debian's Chromium (``/usr/bin/chromium``, installed
by ``scripts/bootstrap.sh``; never a browser downloaded by Playwright) against ingest and
crm started as processes by :class:`jggl_common.e2e.Cluster`, crm serving the current
build of ``web/`` (``scripts/build_web.py`` rebuilds it when its sources changed) and
sending replies to the sandbox's Graph fake, which posts Meta's echoes back to ingest.
Customers write through signed webhooks into ingest, as Meta would.

One system and one browser serve the whole module; each test has its own browser context
(its own cookies), its own customers, and waits for what a user would see within bounded
time (Playwright's ``expect``; no sleep decides an outcome). Screenshots of the main pages
go to ``test-output/browser/`` (git-ignored).
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from jggl_common.e2e import APP_SECRET, Cluster, eventually
from jggl_sandbox.graph_fake import FakeGraph, GraphFakeServer
from jggl_sandbox.meta_webhooks import DEFAULT_APP_ID, signed, webhook

playwright_api = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.xdist_group("browser"), pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "test-output" / "browser"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000
"""The longest a user-visible change may take before a test fails."""
PAGE_ID = f"7{secrets.randbelow(10**12):012d}"
PAGE_TOKEN = "browser-page-token"
ADMIN = ("admin@browser.local", "Browser-Admin-Pass-1")
MANAGERS = {
    "anna": ("anna@browser.local", "Anna-Manager-Pass-1", "Anna Manager"),
    "boris": ("boris@browser.local", "Boris-Manager-Pass-1", "Boris Manager"),
}


@dataclass
class System:
    crm: str
    ingest: str
    graph: FakeGraph
    admin: httpx.Client
    users: dict[str, int] = field(default_factory=dict)
    _at: int = field(default_factory=lambda: int(time.time() * 1000) - 60_000)

    def customer(self, first: str, last: str) -> str:
        """A new customer with a known name (what the Graph fake answers for their profile)."""
        psid = f"9{secrets.randbelow(10**14):014d}"
        self.graph.add_profile(psid, first_name=first, last_name=last, name=f"{first} {last}")
        return psid

    def write(self, psid: str, text: str) -> None:
        """The customer writes ``text``: a signed Messenger webhook into ingest."""
        self._at += 1
        item = {
            "sender": {"id": psid},
            "recipient": {"id": PAGE_ID},
            "timestamp": self._at,
            "message": {"mid": f"m_browser_{secrets.token_hex(8)}", "text": text},
        }
        request = signed(webhook("messenger", PAGE_ID, [item], self._at), APP_SECRET)
        answer = httpx.post(self.ingest + "/webhooks/meta", content=request.body, headers=request.headers)
        assert answer.status_code == 200, answer.text

    def deal_of(self, psid: str) -> dict[str, Any]:
        """The customer's deal, as crm has it (waits until crm stored it)."""

        def find() -> dict[str, Any] | None:
            for deal in self.admin.get("/api/deals", params={"limit": 100}).json()["items"]:
                if deal["contact"]["external_id"] == psid:
                    return dict(deal)
            return None

        return eventually(find, f"the deal of customer {psid}", timeout=30)


def _build_web() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_web.py")], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/bootstrap.sh (it installs Debian's chromium)")
    _build_web()
    cluster = Cluster(tmp_path_factory.mktemp("browser-nats"))
    graph_server = GraphFakeServer(FakeGraph(app_secret=APP_SECRET, app_id=DEFAULT_APP_ID)).start()
    try:
        cluster.run("crm", "migrate")
        cluster.run("crm", "create-admin", ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1])
        ingest = cluster.start("ingest")
        graph_server.fake.echo_url = ingest + "/webhooks/meta"
        crm = cluster.start(
            "crm",
            META_GRAPH_URL=graph_server.url,
            META_ACCESS_TOKEN=PAGE_TOKEN,
            META_APP_ID=str(DEFAULT_APP_ID),
            WEB_DIST=str(ROOT / "web" / "dist"),
        )
        cluster.wait_ready()
        admin = httpx.Client(base_url=crm, timeout=10.0)
        token = admin.post("/api/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]}).json()["access_token"]
        admin.headers["Authorization"] = f"Bearer {token}"
        system = System(crm=crm, ingest=ingest, graph=graph_server.fake, admin=admin)
        for key, (email, password, name) in MANAGERS.items():
            answer = admin.post(
                "/api/users", json={"email": email, "password": password, "name": name, "role": "manager"}
            )
            assert answer.status_code == 201, answer.text
            system.users[key] = answer.json()["id"]
        yield system
        admin.close()
    finally:
        cluster.close()
        graph_server.stop()


@pytest.fixture(scope="module")
def browser(system: System) -> Iterator[Browser]:
    """Chromium, started after the system (so stopped before it: the system's clean-up
    runs outside Playwright's event loop)."""
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser, system: System) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=system.crm, locale="en-GB", viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, email: str, password: str, then: str = "/inbox") -> None:
    page.goto("/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    if then != "/inbox":
        page.goto(then)


def live(page: Page) -> None:
    """Wait until the page's event stream is connected."""
    expect(page.locator(".live.live-live")).to_be_visible()


# ----------------------------------------------------------------------------- scenarios


def test_sign_in_lands_in_the_inbox_and_a_wrong_password_is_refused(page: Page, system: System) -> None:
    page.goto("/inbox")
    expect(page).to_have_url(re.compile(r"/login"))  # not signed in: the login page, the place kept
    page.get_by_label("E-mail").fill(ADMIN[0])
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Wrong e-mail or password.")).to_be_visible()
    page.get_by_label("Password").fill(ADMIN[1])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/inbox$"))
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["jggl_session"]["httpOnly"] is True
    assert page.evaluate("() => Object.keys(localStorage).filter(k => /token|session/i.test(k))") == []


def test_a_webhook_appears_in_the_open_inbox_without_a_reload(page: Page, system: System) -> None:
    sign_in(page, *ADMIN)
    live(page)
    page.evaluate("() => { window.__sameDocument = true; }")
    psid = system.customer("Vera", "Live")
    system.write(psid, "Hello, is the blue sofa still available?")
    row = page.locator(".deal-row", has_text="Vera Live")
    expect(row).to_be_visible()
    expect(row).to_contain_text("Hello, is the blue sofa still available?")
    assert page.evaluate("() => window.__sameDocument") is True  # no reload happened
    system.write(psid, "And in green?")
    expect(row).to_contain_text("And in green?")
    shot(page, "inbox")


PROFILE_DELAY_SECONDS = 6.0
"""How long the Graph fake takes to answer profiles in the test of a name arriving live:
long enough for the page to show the deal first, on a busy machine too."""


def test_a_customers_name_replaces_new_customer_in_the_open_inbox_without_a_reload(page: Page, system: System) -> None:
    psid = f"9{secrets.randbelow(10**14):014d}"
    first_words = f"Is the oak table still for sale? ({secrets.token_hex(3)})"
    email, password, _ = MANAGERS["anna"]
    sign_in(page, email, password)
    live(page)
    page.evaluate("() => { window.__sameDocument = true; }")
    # Meta answers the profile only after a while: the deal arrives before the name.
    system.graph.profile_delay = PROFILE_DELAY_SECONDS
    try:
        system.graph.add_profile(psid, first_name="Lidia", last_name="Named", profile_pic="https://cdn.test/lidia.jpg")
        system.write(psid, first_words)
        row = page.locator(".deal-row", has_text=first_words)
        expect(row).to_contain_text("New customer")
        expect(row.locator("img.avatar")).to_have_count(0)

        # crm fetched the profile and announced it: the same row now names her, with her picture.
        expect(row).to_contain_text("Lidia Named", timeout=WAIT_MS + int(PROFILE_DELAY_SECONDS * 1000))
    finally:
        system.graph.profile_delay = 0.0
    expect(row).not_to_contain_text("New customer")
    expect(row.locator("img.avatar")).to_have_attribute("src", "https://cdn.test/lidia.jpg")
    assert page.evaluate("() => window.__sameDocument") is True  # no reload happened
    assert len(system.graph.calls(psid)) == 1
    shot(page, "inbox-name-arrived")


def test_unread_counts_grow_live_and_one_manager_reading_clears_them_for_the_other(
    browser: Browser, system: System
) -> None:
    psid = system.customer("Nina", "Unread")
    system.write(psid, "First question")
    deal = system.deal_of(psid)
    contexts = [
        browser.new_context(base_url=system.crm, locale="en-GB", viewport={"width": 1280, "height": 860})
        for _ in range(2)
    ]
    try:
        anna, boris = (ctx.new_page() for ctx in contexts)
        sign_in(anna, *MANAGERS["anna"][:2])
        live(anna)
        anna.evaluate("() => { window.__sameDocument = true; }")
        row = anna.locator(".deal-row", has_text="Nina Unread")
        expect(row.locator(".unread-count")).to_have_text("1Unread messages: 1")
        system.write(psid, "Second question")
        system.write(psid, "Third question")
        expect(row.locator(".unread-count")).to_have_text("3Unread messages: 3")
        shot(anna, "inbox-unread")

        # Boris opens the deal in his own browser: Anna's count goes, without a reload.
        sign_in(boris, *MANAGERS["boris"][:2], then=f"/deals/{deal['id']}")
        live(boris)
        expect(boris.get_by_text("Third question")).to_be_visible()
        expect(row.locator(".unread-count")).to_have_count(0)
        expect(row).to_contain_text("Third question")
        # While he has it open, what the customer writes next is read at once.
        system.write(psid, "Fourth question")
        expect(boris.get_by_text("Fourth question")).to_be_visible()
        expect(row).to_contain_text("Fourth question")
        expect(row.locator(".unread-count")).to_have_count(0)
        assert anna.evaluate("() => window.__sameDocument") is True
        answer = system.admin.get(f"/api/deals/{deal['id']}").json()
        assert (answer["last_message_text"], answer["unread"]) == ("Fourth question", 0)
    finally:
        for ctx in contexts:
            ctx.close()


def test_a_full_inbox_renders_without_errors(page: Page, system: System) -> None:
    """More customers waiting than one page of the inbox holds (a million-deal inbox
    once crashed into a blank page with React's "Maximum update depth exceeded")."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    items = []
    for i in range(32):
        psid = system.customer(f"Crowd{i:02d}", "Waiting")
        system._at += 1
        message = {"mid": f"m_browser_{secrets.token_hex(8)}", "text": f"Crowd message {i}"}
        items.append(
            {"sender": {"id": psid}, "recipient": {"id": PAGE_ID}, "timestamp": system._at, "message": message}
        )
    request = signed(webhook("messenger", PAGE_ID, items, system._at), APP_SECRET)
    assert (
        httpx.post(system.ingest + "/webhooks/meta", content=request.body, headers=request.headers).status_code == 200
    )
    eventually(
        lambda: len(system.admin.get("/api/deals", params={"limit": 100}).json()["items"]) >= 32,
        "the 32 waiting customers' deals",
    )
    sign_in(page, *ADMIN)
    expect(page.locator(".deal-row.awaiting").nth(29)).to_be_visible()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    assert errors == []


def test_a_reply_reaches_the_graph_fake_and_turns_sent(page: Page, system: System) -> None:
    psid = system.customer("Pavel", "Reply")
    system.write(psid, "Do you deliver to Kazan?")
    deal = system.deal_of(psid)
    sign_in(page, *ADMIN, then=f"/deals/{deal['id']}")
    live(page)
    expect(page.get_by_text("Do you deliver to Kazan?")).to_be_visible()
    page.get_by_label("Your reply").fill("Yes, in two days.")
    page.get_by_role("button", name="Send").click()
    mine = page.locator(".message-out", has_text="Yes, in two days.")
    expect(mine).to_be_visible()
    expect(mine.locator(".delivery")).to_have_text(re.compile(r"\b(sent|delivered|read)\s*$"))
    sent = eventually(lambda: system.graph.sent_to(PAGE_ID), "the send at the Graph fake", timeout=10)
    assert any(s.get("recipient", {}).get("id") == psid and "Yes, in two days." in str(s) for s in sent), sent
    shot(page, "deal")


def test_a_deal_dragged_to_another_stage_is_moved_in_crm(page: Page, system: System) -> None:
    psid = system.customer("Daria", "Drag")
    system.write(psid, "I would like a quote for 3 chairs")
    deal = system.deal_of(psid)
    stages = system.admin.get("/api/pipeline").json()
    sign_in(page, *ADMIN, then="/pipeline")
    live(page)
    source_key = deal["stage"]["key"]
    target = next(s for s in _stages(stages) if s["key"] != source_key)
    card = page.locator(".deal-card", has_text="Daria Drag")
    expect(card).to_be_visible()
    target_column = page.get_by_role("region", name=target["name"], exact=True)
    card.drag_to(target_column)
    expect(target_column.locator(".deal-card", has_text="Daria Drag")).to_be_visible()
    moved = eventually(
        lambda: (d := system.admin.get(f"/api/deals/{deal['id']}").json())["stage"]["key"] == target["key"] and d,
        "the deal in the new stage in crm",
        timeout=10,
    )
    assert moved["stage"]["key"] == target["key"]
    shot(page, "pipeline")


def _stages(board: Any) -> list[dict[str, Any]]:
    """The board's stage columns (``key``, ``name``)."""
    return [stage for stage in board["stages"] if stage.get("is_active", True)]


def test_search_highlights_a_cyrillic_word(page: Page, system: System) -> None:
    psid = system.customer("Ирина", "Поиск")
    system.write(psid, "Здравствуйте! Нужен холодильник Бирюса, есть в наличии?")
    system.deal_of(psid)
    sign_in(page, *ADMIN, then="/search")
    box = page.get_by_label("Search deals")
    box.fill("холодил")
    result = page.locator("li, [role=option]", has_text="Ирина Поиск").first
    expect(result).to_be_visible()
    mark = page.locator("mark", has_text=re.compile("холодил", re.IGNORECASE)).first
    expect(mark).to_be_visible()
    shot(page, "search")


def test_a_manager_cannot_open_another_managers_deal_by_url(page: Page, system: System) -> None:
    psid = system.customer("Oleg", "Private")
    system.write(psid, "Only for Boris, please")
    deal = system.deal_of(psid)
    answer = system.admin.patch(f"/api/deals/{deal['id']}", json={"assignee_id": system.users["boris"]})
    assert answer.status_code == 200, answer.text
    email, password, _ = MANAGERS["anna"]
    sign_in(page, email, password, then=f"/deals/{deal['id']}")
    expect(page.get_by_text("This deal was not found.")).to_be_visible()
    expect(page.get_by_text("Only for Boris, please")).to_have_count(0)
    status = page.evaluate("async (id) => (await fetch(`/api/deals/${id}`)).status", deal["id"])
    assert status == 404


def test_an_admin_changes_a_secret_and_sees_it_masked(page: Page, system: System) -> None:
    secret = f"sk-browser-{secrets.token_hex(12)}"
    sign_in(page, *ADMIN, then="/admin/settings")
    row = page.locator(".setting", has=page.locator("code", has_text=re.compile(r"^gemini\.api_key$")))
    expect(row).to_be_visible()
    field_ = row.locator("input")
    assert field_.get_attribute("type") == "password"
    field_.fill(secret)
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_text("gemini.api_key saved.")).to_be_visible()
    expect(row.locator(".badge-source-database")).to_be_visible()
    expect(row).not_to_contain_text(secret)
    expect(row).not_to_contain_text(secret[4:])
    listed = {s["key"]: s for s in system.admin.get("/api/settings").json()["items"]}
    assert listed["gemini.api_key"]["value"] not in (None, secret)
    assert secret not in page.content()
    shot(page, "admin-settings")


PAGES = [
    ("contacts", "/contacts"),
    ("my-stats", "/stats"),
    ("telegram", "/telegram"),
    ("admin-users", "/admin/users"),
    ("admin-stages", "/admin/stages"),
    ("admin-channels", "/admin/channels"),
    ("admin-audit-log", "/admin/audit-log"),
    ("admin-system-log", "/admin/system-log"),
    ("admin-team-stats", "/admin/team"),
    ("admin-jobs", "/admin/jobs"),
]


def test_every_other_page_renders_without_a_page_error(page: Page, system: System) -> None:
    """Each page an admin can open shows its heading and nothing throws; a screenshot of
    each goes to test-output/browser/ to be looked at."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    psid = system.customer("Galina", "Pages")
    system.write(psid, "Хочу узнать про доставку")
    system.deal_of(psid)
    sign_in(page, *ADMIN)
    for name, path in PAGES:
        page.goto(path)
        expect(page.locator("h1").first).to_be_visible()
        expect(page.locator(".spinner")).to_have_count(0)
        shot(page, name)
    assert errors == []

"""The whole AI path with every service as a process: signed webhooks into ingest, crm
stores the conversation, ai analyses it with the Gemini fake, crm shows the result on the
deal through its API. Real PostgreSQL, Redis and a private JetStream server."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import httpx
import pytest

from jggl_common.e2e import APP_SECRET, Cluster
from jggl_sandbox.gemini_fake import GeminiFakeServer
from jggl_sandbox.graph_fake import GraphFakeServer
from jggl_sandbox.meta_webhooks import signed, webhook

pytestmark = pytest.mark.xdist_group("e2e")

ADMIN = ("admin@e2e.local", "Correct-Horse-Battery-9")


@pytest.fixture
def system(cluster: Cluster) -> Iterator[dict[str, str]]:
    """ingest, crm and ai as processes on private ports, schemas and NATS."""
    with GraphFakeServer() as graph, GeminiFakeServer(api_keys={"e2e-key"}) as gemini:
        cluster.run("crm", "migrate")
        cluster.run("ai", "migrate")
        cluster.run("crm", "create-admin", ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1])
        cluster.start("crm", META_GRAPH_URL=graph.url)
        cluster.start("ingest")
        cluster.start("ai", GEMINI_API_KEY="e2e-key", GEMINI_BASE_URL=gemini.url, AI_DEBOUNCE_SECONDS="1")
        cluster.wait_ready()
        yield cluster.urls


def _message(psid: str, page: str, mid: str, text: str, at_ms: int) -> dict[str, object]:
    message = {"mid": mid, "text": text}
    return {"sender": {"id": psid}, "recipient": {"id": page}, "timestamp": at_ms, "message": message}


def test_a_conversation_gets_its_gemini_analysis_on_the_deal(system: dict[str, str]) -> None:
    page, psid = f"1000{secrets.randbelow(10**9)}", f"2000{secrets.randbelow(10**9)}"
    now_ms = int(time.time() * 1000)
    texts = ["Hi! How much is the green backpack?", "I want to buy two, please order them"]
    for i, text in enumerate(texts):
        item = _message(psid, page, f"m_e2e_{psid}_{i}", text, now_ms - 60_000 + i)
        body = webhook("messenger", page, [item], now_ms)
        request = signed(body, APP_SECRET)
        answer = httpx.post(system["ingest"] + "/webhooks/meta", content=request.body, headers=request.headers)
        assert answer.status_code == 200, answer.text

    crm = httpx.Client(base_url=system["crm"], timeout=10.0)
    token = crm.post("/api/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]}).json()["access_token"]
    crm.headers["Authorization"] = f"Bearer {token}"

    deadline = time.monotonic() + 60
    deal: dict[str, object] = {}
    while time.monotonic() < deadline:
        items = crm.get("/api/deals").json()["items"]
        if items:
            deal = crm.get(f"/api/deals/{items[0]['id']}").json()
            if deal.get("ai_summary"):
                break
        time.sleep(0.3)
    assert deal.get("ai_summary") == "2 messages; the customer last wrote: I want to buy two, please order them", deal
    assert deal["ai_intent"] == "purchase"
    assert deal["ai_temperature"] == "hot"
    assert deal["ai_source"] == "gemini"
    activities = crm.get(f"/api/deals/{deal['id']}/activities").json()["items"]
    assert any(activity["kind"] == "ai_analysis" for activity in activities)
    found = crm.get("/api/search", params={"q": "purchase"}).json()["items"]
    assert [item["id"] for item in found] == [deal["id"]]

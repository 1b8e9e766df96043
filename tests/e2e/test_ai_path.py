"""The whole AI path with every service as a process: signed webhooks into ingest, crm
stores the conversation, ai analyses it with the Gemini fake, crm shows the result on the
deal through its API. Real PostgreSQL, Redis and a private JetStream server."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jggl_common.testing import TEST_DATABASE_URL, TEST_REDIS_URL, free_port, start_nats_server
from jggl_sandbox.gemini_fake import GeminiFakeServer
from jggl_sandbox.graph_fake import GraphFakeServer
from jggl_sandbox.meta_webhooks import signed, webhook

pytestmark = pytest.mark.xdist_group("e2e")

APP_SECRET = "e2e-app-secret"
ADMIN = ("admin@e2e.local", "Correct-Horse-Battery-9")


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


@pytest.fixture
def system(tmp_path: Path) -> Iterator[dict[str, str]]:
    """ingest, crm and ai as processes on private ports, schemas and NATS."""
    nats_proc, nats_port = start_nats_server(tmp_path / "js")
    tag = secrets.token_hex(4)
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
    procs: list[subprocess.Popen[bytes]] = []
    with GraphFakeServer() as graph, GeminiFakeServer(api_keys={"e2e-key"}) as gemini:
        ports = {name: free_port() for name in ("crm", "ingest", "ai")}
        envs = {
            "crm": {
                **base,
                "PORT": str(ports["crm"]),
                "DB_SCHEMA": f"crm_e2e_{tag}",
                "META_GRAPH_URL": graph.url,
                "ADMIN_EMAIL": ADMIN[0],
                "ADMIN_PASSWORD": ADMIN[1],
            },
            "ingest": {**base, "PORT": str(ports["ingest"])},
            "ai": {
                **base,
                "PORT": str(ports["ai"]),
                "DB_SCHEMA": f"ai_e2e_{tag}",
                "GEMINI_API_KEY": "e2e-key",
                "GEMINI_BASE_URL": gemini.url,
                "AI_DEBOUNCE_SECONDS": "1",
            },
        }
        try:
            for name, command in (("crm", "migrate"), ("ai", "migrate"), ("crm", "create-admin")):
                subprocess.run([sys.executable, "-m", name, command], env=envs[name], check=True, capture_output=True)
            for name in ("crm", "ingest", "ai"):
                procs.append(subprocess.Popen([sys.executable, "-m", name], env=envs[name]))
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            for proc, name in zip(procs, ("crm", "ingest", "ai"), strict=True):
                _wait_ready(urls[name], proc)
            yield urls
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            nats_proc.terminate()
            nats_proc.wait(10)
            _drop_schemas(envs["crm"]["DB_SCHEMA"], envs["ai"]["DB_SCHEMA"])


def _drop_schemas(*schemas: str) -> None:
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(TEST_DATABASE_URL)
        try:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


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

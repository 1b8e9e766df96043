"""``make demo``'s customers: signed webhooks, quiet ones stay quiet, the others answer replies."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx

from jggl_sandbox.demo import Customer, Demo
from jggl_sandbox.graph_fake import FakeGraph
from jggl_sandbox.meta_webhooks import sign

SECRET = "demo-test-secret"


def _demo() -> tuple[Demo, list[dict[str, Any]], httpx.AsyncClient]:
    received: list[dict[str, Any]] = []

    def ingest(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-Hub-Signature-256"] == sign(request.content, SECRET)
        received.append(json.loads(request.content))
        return httpx.Response(200, json={"ok": True})

    demo = Demo("http://ingest", "http://crm", SECRET, "111", "222", FakeGraph(), random.Random(7))
    return demo, received, httpx.AsyncClient(transport=httpx.MockTransport(ingest))


def _texts(bodies: list[dict[str, Any]]) -> list[str]:
    return [
        item["message"]["text"]
        for body in bodies
        for entry in body["entry"]
        for item in entry["messaging"]
        if "message" in item
    ]


async def test_a_customer_writes_the_opening_and_answers_each_manager_reply(monkeypatch: Any) -> None:
    monkeypatch.setattr("jggl_sandbox.demo._sleep", _no_wait)
    demo, received, http = _demo()
    customer = Customer("9001", "messenger", "Anna S", ["Hi", "How much?"], ["Thanks!", "Deal"], quiet=False)
    stop = asyncio.Event()
    play = asyncio.create_task(demo.play(http, customer, stop))
    await _until(lambda: len(_texts(received)) == 2)
    assert _texts(received) == ["Hi", "How much?"]
    demo.graph.sent.append({"recipient": {"id": "9001"}, "message_id": "m_1", "message": {"text": "20 EUR"}})
    await _until(lambda: "Thanks!" in _texts(received))
    assert any("read" in item for body in received for item in body["entry"][0]["messaging"])
    demo.graph.sent.append({"recipient": {"id": "9001"}, "message_id": "m_2", "message": {"text": "Shall I?"}})
    await _until(lambda: "Deal" in _texts(received))
    await asyncio.wait_for(play, 2)  # nothing left to say: the customer is done
    assert demo.failed == 0
    await http.aclose()


async def test_a_quiet_customer_never_answers(monkeypatch: Any) -> None:
    monkeypatch.setattr("jggl_sandbox.demo._sleep", _no_wait)
    demo, received, http = _demo()
    customer = Customer("9002", "instagram", "Liam B", ["Hello"], ["Thanks!"], quiet=True)
    demo.graph.sent.append({"recipient": {"id": "9002"}, "message_id": "m_3", "message": {"text": "Hi!"}})
    await asyncio.wait_for(demo.play(http, customer, asyncio.Event()), 2)
    assert _texts(received) == ["Hello"]
    assert received[0]["object"] == "instagram"
    assert received[0]["entry"][0]["id"] == "222"
    await http.aclose()


def test_new_customers_have_a_profile_and_a_script() -> None:
    demo, _, _ = _demo()
    customers = [demo.new_customer() for _ in range(30)]
    assert all(demo.graph.profiles[c.psid]["name"] == c.name for c in customers)
    assert all(1 <= len(c.opening) <= 3 and c.replies for c in customers)
    assert any(c.quiet for c in customers)
    assert not all(c.quiet for c in customers)
    assert {c.platform for c in customers} == {"messenger", "instagram"}


async def _no_wait(_seconds: float, stop: asyncio.Event) -> None:
    await asyncio.sleep(0)


async def _until(check: Any, timeout: float = 2.0) -> None:
    async def wait() -> None:
        while not check():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(wait(), timeout)

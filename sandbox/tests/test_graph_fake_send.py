"""The Graph fake's Send API: Meta's answers and errors, and echoes posted back like Meta."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI, Request, Response

from jggl_sandbox.graph_fake import THROTTLING_CODES, GraphFakeServer
from jggl_sandbox.meta_webhooks import DEFAULT_APP_ID

PAGE = "104857600123456"
IG = "17841400123456789"
SECRET = "fake-app-secret"


@pytest.fixture
def server() -> Iterator[GraphFakeServer]:
    with GraphFakeServer() as running:
        running.fake.instagram_accounts.add(IG)
        yield running


def _send(text: str = "Hello", recipient: str = "2400000000000001", **extra: Any) -> dict[str, Any]:
    return {"recipient": {"id": recipient}, "messaging_type": "RESPONSE", "message": {"text": text}, **extra}


class Receiver:
    """A webhook endpoint in the test's loop that records what it gets."""

    def __init__(self) -> None:
        self.bodies: list[tuple[bytes, dict[str, str]]] = []
        self.arrived = asyncio.Event()
        app = FastAPI()

        @app.post("/webhooks/meta")
        async def hook(request: Request) -> Response:
            self.bodies.append((await request.body(), dict(request.headers)))
            self.arrived.set()
            return Response(status_code=200)

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/meta"
        self._sock = sock
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    got = Receiver()
    task = asyncio.create_task(got.server.serve(sockets=[got._sock]))
    while not got.server.started:
        await asyncio.sleep(0.01)
    yield got
    got.server.should_exit = True
    await task


async def test_a_send_answers_like_meta_and_is_recorded(server: GraphFakeServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        messenger = await client.post("/v25.0/me/messages", json=_send(), headers={"Authorization": "Bearer t"})
        instagram = await client.post(f"/v25.0/{IG}/messages", json=_send(), headers={"Authorization": "Bearer t"})

    assert messenger.status_code == 200
    assert messenger.json()["recipient_id"] == "2400000000000001"
    assert messenger.json()["message_id"].startswith("m_")
    assert len(messenger.json()["message_id"]) > 60
    assert base64.b64decode(instagram.json()["message_id"] + "==").startswith(b"ig_message_item:1:")
    assert [s["message_id"] for s in server.fake.sent] == [
        messenger.json()["message_id"],
        instagram.json()["message_id"],
    ]
    assert len(server.fake.send_attempts()) == 2
    assert server.fake.send_attempts()[0].at <= server.fake.send_attempts()[1].at


async def test_malformed_sends_are_metas_code_100(server: GraphFakeServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": "Bearer t"}) as client:
        no_text = await client.post(f"/v25.0/{PAGE}/messages", json={"recipient": {"id": "1"}, "message": {}})
        untagged = await client.post(f"/v25.0/{PAGE}/messages", json=_send(messaging_type="MESSAGE_TAG"))
        too_long = await client.post(f"/v25.0/{PAGE}/messages", json=_send("x" * 2001))

    for answer in (no_text, untagged, too_long):
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == 100
    assert server.fake.sent == []


@pytest.mark.parametrize("code", sorted(THROTTLING_CODES | {10, 100, 190, 551}))
async def test_every_error_on_demand_for_one_page(server: GraphFakeServer, code: int) -> None:
    server.fake.fail_sends(PAGE, 2, code=code, regain_minutes=4)
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": "Bearer t"}) as client:
        other_page = await client.post("/v25.0/999/messages", json=_send())
        answers = [await client.post(f"/v25.0/{PAGE}/messages", json=_send()) for _ in range(3)]

    assert other_page.status_code == 200
    assert [a.status_code for a in answers] == [400, 400, 200]
    error = answers[0].json()["error"]
    assert error["code"] == code
    assert error["fbtrace_id"]
    usage = answers[0].headers.get("x-business-use-case-usage")
    if code in THROTTLING_CODES:
        assert json.loads(usage)[PAGE][0]["estimated_time_to_regain_access"] == 4
        assert "call_count" in json.loads(answers[0].headers["x-app-usage"])
    else:
        assert usage is None
    assert len(server.fake.send_attempts(PAGE)) == 3
    assert len(server.fake.sent_to(PAGE)) == 1


@pytest.mark.parametrize("mode", ["after", "before"])
async def test_each_send_is_echoed_back_signed_like_meta(
    server: GraphFakeServer, receiver: Receiver, mode: str
) -> None:
    server.fake.echo_url, server.fake.app_secret, server.fake.echo_mode = receiver.url, SECRET, mode  # type: ignore[assignment]
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": "Bearer t"}) as client:
        answer = await client.post(f"/v25.0/{PAGE}/messages", json=_send("Привет 👋", recipient="77"))
        if mode == "before":
            assert receiver.arrived.is_set()  # posted, and answered, before the send was
        await asyncio.wait_for(receiver.arrived.wait(), 5)

    ((raw, headers),) = receiver.bodies
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["x-hub-signature-256"] == expected
    assert raw.isascii()  # non-ASCII escaped, as Meta does
    body = json.loads(raw)
    assert body["object"] == "page"
    (entry,) = body["entry"]
    (item,) = entry["messaging"]
    assert entry["id"] == PAGE
    assert item["sender"] == {"id": PAGE}
    assert item["recipient"] == {"id": "77"}
    assert item["message"] == {
        "mid": answer.json()["message_id"],
        "is_echo": True,
        "app_id": DEFAULT_APP_ID,
        "text": "Привет 👋",
    }
    # The fake records the echo once the receiver has answered it.
    for _ in range(100):
        if server.fake.echoes:
            break
        await asyncio.sleep(0.02)
    assert server.fake.echoes[0]["status"] == 200


async def test_an_attachment_echo_points_at_metas_cdn(server: GraphFakeServer, receiver: Receiver) -> None:
    server.fake.echo_url, server.fake.app_secret = receiver.url, SECRET
    send = {
        "recipient": {"id": "5"},
        "message": {
            "attachment": {"type": "image", "payload": {"url": "https://example.com/a.png", "is_reusable": True}}
        },
    }
    async with httpx.AsyncClient(base_url=server.url, headers={"Authorization": "Bearer t"}) as client:
        assert (await client.post(f"/v25.0/{IG}/messages", json=send)).status_code == 200
        await asyncio.wait_for(receiver.arrived.wait(), 5)

    body = json.loads(receiver.bodies[0][0])
    assert body["object"] == "instagram"
    (attachment,) = body["entry"][0]["messaging"][0]["message"]["attachments"]
    assert attachment["type"] == "image"
    assert attachment["payload"]["url"].startswith("https://scontent.xx.fbcdn.net/")


async def test_echoes_are_configured_over_http(server: GraphFakeServer, receiver: Receiver) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        configured = await client.post(
            "/_fake/echo", json={"url": receiver.url, "app_secret": SECRET, "app_id": 42, "mode": "before"}
        )
        await client.post("/_fake/errors", json={"code": 613, "match": "/messages", "regain_minutes": 1})
        throttled = await client.post("/v25.0/1/messages", json=_send(), headers={"Authorization": "Bearer t"})
        sent = await client.post("/v25.0/1/messages", json=_send(), headers={"Authorization": "Bearer t"})
        echoes = await client.get("/_fake/echoes")
        requests = await client.get("/_fake/requests")

    assert configured.json() == {"url": receiver.url, "app_id": 42, "mode": "before"}
    assert throttled.json()["error"]["code"] == 613
    assert echoes.json() == [{"mid": sent.json()["message_id"], "status": 200}]
    assert all("at" in r for r in requests.json())
    assert json.loads(receiver.bodies[0][0])["entry"][0]["messaging"][0]["message"]["app_id"] == 42

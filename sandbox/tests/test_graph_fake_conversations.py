"""The Graph fake's Conversations API: what customers wrote and what the page replied,
newest first, paged like Graph, only the last 20 messages; webhooks delivered or dropped."""

from __future__ import annotations

import time
from typing import Any

import httpx

from jggl_sandbox.graph_conversations import MESSAGES_KEPT, meta_time
from jggl_sandbox.graph_fake import FakeGraph, GraphFakeServer

PAGE = "1000000000001"
DAY_AGO = int(time.time() * 1000) - 86_400_000


def walk(graph: httpx.Client, path: str, **params: str) -> list[dict[str, Any]]:
    """Every item of a listing, following ``paging.next`` (a full URL with its own query)."""
    items: list[dict[str, Any]] = []
    page = graph.get(path, params=params).json()
    for _ in range(100):
        items += page["data"]
        following = page.get("paging", {}).get("next")
        if following is None:
            return items
        page = httpx.get(following).json()
    raise AssertionError("paging did not end")


def test_conversations_and_messages_page_like_graph() -> None:
    fake = FakeGraph()
    with GraphFakeServer(fake) as server, httpx.Client(base_url=server.url, params={"access_token": "t"}) as graph:
        for n in range(30):
            fake.inbox.customer_writes(PAGE, f"user-{n}", f"hello {n}", at_ms=DAY_AGO + n * 1000)
        for n in range(MESSAGES_KEPT + 5):
            fake.inbox.customer_writes(PAGE, "user-0", f"again {n}", at_ms=DAY_AGO + 100_000 + n * 1000)
        reply = graph.post(f"/v25.0/{PAGE}/messages", json={"recipient": {"id": "user-1"}, "message": {"text": "hi!"}})
        assert reply.status_code == 200

        seen = walk(graph, f"/v25.0/{PAGE}/conversations", platform="messenger", fields="id,updated_time", limit="10")
        assert len(seen) == 30
        assert len({c["id"] for c in seen}) == 30
        # Most recently updated first: user-1 got our reply last, then user-0 wrote again.
        assert [c["updated_time"] for c in seen] == sorted((c["updated_time"] for c in seen), reverse=True)
        first = seen[0]["id"]
        messages = graph.get(f"/v25.0/{first}/messages", params={"fields": "id,created_time,from,to,message"}).json()
        assert messages["data"][0]["message"] == "hi!"
        assert messages["data"][0]["from"] == {"id": PAGE}
        assert messages["data"][1]["message"] == "hello 1"
        assert messages["data"][1]["created_time"] == meta_time(DAY_AGO + 1000)
        chatty = fake.inbox.conversation_id(PAGE, "user-0")
        all_kept = walk(graph, f"/v25.0/{chatty}/messages", fields="id,message", limit="7")
        assert [m["message"] for m in all_kept] == [f"again {n}" for n in reversed(range(5, MESSAGES_KEPT + 5))]
        assert graph.get(f"/v25.0/{PAGE}/conversations", params={"after": "garbage"}).json()["error"]["code"] == 100
        assert graph.get("/v25.0/t_404/messages").json()["error"]["code"] == 100
        unauthenticated = httpx.get(f"{server.url}/v25.0/{PAGE}/conversations")
        assert unauthenticated.json()["error"]["code"] == 104


def test_a_dropped_webhook_is_kept_in_the_conversation() -> None:
    fake = FakeGraph()
    fake.inbox.drop_webhooks = True
    with GraphFakeServer(fake) as server:
        body = fake.inbox.customer_writes(PAGE, "u1", "lost")
        assert fake.inbox.deliver(body, f"{server.url}/webhooks/meta", "s3cret") is None
        assert fake.inbox.dropped == [body]
        assert fake.inbox.delivered == []
        messages = httpx.get(
            f"{server.url}/v25.0/{fake.inbox.conversation_id(PAGE, 'u1')}/messages",
            params={"access_token": "t", "fields": "message,from"},
        ).json()["data"]
        assert messages == [
            {"id": body["entry"][0]["messaging"][0]["message"]["mid"], "message": "lost", "from": {"id": "u1"}}
        ]

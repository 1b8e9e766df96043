"""Webhooks lost, messages recovered: ingest, crm and the scheduler as processes, the Graph
fake dropping some webhooks; an admin runs the Meta backfill through crm's API, the
scheduler ticks it, crm reads the Conversations API and feeds what it finds through
ingest's stream, and each missing message is stored exactly once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from jggl_common.contracts import utcnow
from jggl_common.e2e import APP_SECRET, Cluster, eventually
from jggl_sandbox.graph_fake import FakeGraph, GraphFakeServer

pytestmark = pytest.mark.xdist_group("e2e")

ADMIN = ("admin@backfill.e2e", "Correct-Horse-Battery-9")
PAGE = "1000000000777"
TOKEN = "e2e-page-token"
ANNA, BORIS = "2000000000001", "2000000000002"


def texts(crm: httpx.Client, deal_id: int) -> list[str]:
    return [m["text"] for m in crm.get(f"/api/deals/{deal_id}/messages").json()["items"]]


def deals_by_customer(crm: httpx.Client) -> dict[str, dict[str, Any]]:
    return {d["contact"]["external_id"]: d for d in crm.get("/api/deals").json()["items"]}


def test_messages_whose_webhooks_were_lost_are_recovered_once(cluster: Cluster) -> None:
    fake = FakeGraph(tokens={TOKEN})
    with GraphFakeServer(fake) as graph:
        cluster.run("crm", "migrate")
        cluster.run("scheduler", "migrate")
        cluster.run("crm", "create-admin", ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1])
        cluster.start("ingest")
        cluster.start("crm", META_GRAPH_URL=graph.url, META_ACCESS_TOKEN=TOKEN)
        cluster.start("scheduler")
        cluster.wait_ready()
        webhooks = cluster.urls["ingest"] + "/webhooks/meta"

        crm = httpx.Client(base_url=cluster.urls["crm"], timeout=10.0)
        login = crm.post("/api/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        crm.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

        # Anna's first message arrives by webhook. (Graph tells times to the second: the
        # messages are seconds apart, as a customer's are.)
        at_ms = int(utcnow().timestamp() * 1000) - 60_000
        first = fake.inbox.customer_writes(PAGE, ANNA, "Hi, is it in stock?", at_ms=at_ms)
        assert fake.inbox.deliver(first, webhooks, APP_SECRET) == 200
        anna = eventually(lambda: deals_by_customer(crm).get(ANNA), "Anna's deal")
        # Then Meta loses webhooks: two more from Anna, the first one from Boris.
        fake.inbox.drop_webhooks = True
        for n, (user, text) in enumerate(((ANNA, "Size M please"), (BORIS, "Do you ship abroad?"), (ANNA, "Hello?"))):
            lost = fake.inbox.customer_writes(PAGE, user, text, at_ms=at_ms + (n + 1) * 10_000)
            assert fake.inbox.deliver(lost, webhooks, APP_SECRET) is None
        assert len(fake.inbox.dropped) == 3

        eventually(lambda: any(j["name"] == "meta_sync" for j in crm.get("/api/jobs").json()["items"]), "jobs listed")
        bad = crm.post("/api/jobs/meta_sync/run", json={"since": utcnow().isoformat(), "until": "2020-01-01T00:00:00Z"})
        assert bad.status_code == 422
        window = {"since": (utcnow() - timedelta(hours=1)).isoformat()}
        for _ in range(2):  # run twice: the second finds everything stored already
            ran = crm.post("/api/jobs/meta_sync/run", json=window)
            assert ran.status_code == 202, ran.text
            slot = f"manual-{ran.json()['command_id']}"

            def finished(slot: str = slot) -> dict[str, Any] | None:
                job = next(j for j in crm.get("/api/jobs").json()["items"] if j["name"] == "meta_sync")
                outcome = job["last_outcome"]
                return outcome if outcome and outcome["slot"] == slot else None

            outcome = eventually(finished, "the backfill's outcome")
            assert outcome["status"] == "done", outcome
            assert outcome["counts"]["messages"] == 4  # the webhook's one is read again, and deduplicated
        expected = ["Hi, is it in stock?", "Size M please", "Hello?"]
        eventually(lambda: texts(crm, anna["id"]) == expected or None, "Anna's three messages")
        boris = eventually(lambda: deals_by_customer(crm).get(BORIS), "Boris's deal")
        assert texts(crm, boris["id"]) == ["Do you ship abroad?"]
        # Nothing doubled, whichever of the two runs stored what.
        assert sorted(deals_by_customer(crm)) == [ANNA, BORIS]
        assert texts(crm, anna["id"]) == expected
        assert any("/conversations" in call.path for call in fake.calls())

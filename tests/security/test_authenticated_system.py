"""The whole system on a broker that asks every client who it is: the five services as
processes, each with its own NATS user from deploy/nats/auth.conf. A signed webhook
becomes a deal, an admin's setting reaches ingest, a job runs from crm's API through the
scheduler to its owner and back, and the broker refused nothing any service did."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jggl_common.e2e import APP_SECRET, Cluster, eventually
from jggl_sandbox.graph_fake import GraphFakeServer
from jggl_sandbox.meta_webhooks import signed, webhook
from jggl_sandbox.nats_credentials import NatsCredential

# Five services and four migrations start on a machine that may be busy.
pytestmark = [pytest.mark.xdist_group("e2e"), pytest.mark.timeout(420)]

ADMIN = ("admin@auth.e2e", "Correct-Horse-Battery-9")
SERVICES = ("crm", "ingest", "ai", "notifier", "scheduler")


@pytest.fixture
def system(tmp_path: Path, nats_credentials: dict[str, NatsCredential]) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path / "jetstream", nats_users=nats_credentials)
    try:
        with GraphFakeServer() as graph:
            for service in ("crm", "ai", "notifier", "scheduler"):
                cluster.run(service, "migrate")
            cluster.run("crm", "create-admin", ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1])
            # crm first: it declares the streams and the settings bucket the others read.
            cluster.start("crm", META_GRAPH_URL=graph.url)
            cluster.wait_ready()
            for service in SERVICES[1:]:
                cluster.start(service)
            cluster.wait_ready()
            yield cluster
    finally:
        cluster.close()


def _post_webhook(ingest: str, page: str, psid: str, text: str, secret: str) -> int:
    now_ms = int(time.time() * 1000)
    item = {
        "sender": {"id": psid},
        "recipient": {"id": page},
        "timestamp": now_ms,
        "message": {"mid": f"m_auth_{secrets.token_hex(6)}", "text": text},
    }
    request = signed(webhook("messenger", page, [item], now_ms), secret)
    return httpx.post(ingest + "/webhooks/meta", content=request.body, headers=request.headers).status_code


def test_every_service_does_its_job_as_its_own_broker_user(system: Cluster) -> None:
    crm = httpx.Client(base_url=system.urls["crm"], timeout=10.0)
    login = crm.post("/api/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
    crm.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    page, psid = f"1000{secrets.randbelow(10**9)}", f"2000{secrets.randbelow(10**9)}"

    # ingest publishes the webhook, crm consumes it and stores the deal.
    assert _post_webhook(system.urls["ingest"], page, psid, "Hello, is the blue one in stock?", APP_SECRET) == 200
    eventually(lambda: crm.get("/api/deals").json()["items"], "the deal from the webhook")

    # crm writes a live setting (sealed) into the bucket; ingest reads it and checks with it.
    rotated = "rotated-" + secrets.token_hex(8)
    assert crm.put("/api/settings/meta.app_secret", json={"value": rotated}).status_code == 200

    def new_secret_taken() -> bool:
        return _post_webhook(system.urls["ingest"], page, psid, "still there?", rotated) == 200

    eventually(new_secret_taken, "ingest checking signatures with the secret set in crm")
    assert _post_webhook(system.urls["ingest"], page, psid, "old secret", APP_SECRET) == 403

    # crm commands the scheduler, the scheduler ticks ai, ai reports back to the scheduler.
    ran = crm.post("/api/jobs/retention.ai/run", json={})
    assert ran.status_code == 202, ran.text
    slot = f"manual-{ran.json()['command_id']}"

    def outcome() -> dict[str, Any] | None:
        jobs = {job["name"]: job for job in crm.get("/api/jobs").json()["items"]}
        last = jobs["retention.ai"]["last_outcome"]
        return last if last and last["slot"] == slot else None

    assert eventually(outcome, "retention.ai's outcome")["status"] == "done"

    assert all(system.running(service) for service in SERVICES)
    assert system.broker_refusals() == []

"""The retention job end to end: crm, ai, notifier and the scheduler as processes; an admin
runs ``retention.crm``, ``retention.ai`` and ``retention.notifier`` through crm's API, each
owner prunes its own tables on its tick and reports, and ``/api/jobs`` shows each run done
with its counts per table."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jggl_common.e2e import Cluster, eventually

pytestmark = pytest.mark.xdist_group("e2e")

ADMIN = ("admin@retention.e2e", "Correct-Horse-Battery-9")
TABLES = {
    "retention.crm": {"outbox", "pending_updates", "receipts", "system_log", "telegram_link_codes"},
    "retention.ai": {"analyses", "outbox"},
    "retention.notifier": {"notifications", "actions", "handled_updates", "link_codes", "reply_drafts", "outbox"},
}


def test_each_owner_runs_its_retention_job_and_reports_it(cluster: Cluster) -> None:
    for service in ("crm", "ai", "notifier", "scheduler"):
        cluster.run(service, "migrate")
    cluster.run("crm", "create-admin", ADMIN_EMAIL=ADMIN[0], ADMIN_PASSWORD=ADMIN[1])
    for service in ("crm", "ai", "notifier", "scheduler"):
        cluster.start(service)
    cluster.wait_ready()

    crm = httpx.Client(base_url=cluster.urls["crm"], timeout=10.0)
    login = crm.post("/api/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
    crm.headers["Authorization"] = f"Bearer {login.json()['access_token']}"

    def jobs() -> dict[str, dict[str, Any]]:
        return {job["name"]: job for job in crm.get("/api/jobs").json()["items"]}

    listed = eventually(lambda: jobs() if set(TABLES) <= set(jobs()) else None, "the retention jobs listed")
    for name in TABLES:
        assert listed[name]["owner"] == name.split(".")[1]
        assert (listed[name]["kind"], listed[name]["expression"]) == ("cron", "30 3 * * *")

    slots = {}
    for name in TABLES:
        ran = crm.post(f"/api/jobs/{name}/run", json={})
        assert ran.status_code == 202, ran.text
        slots[name] = f"manual-{ran.json()['command_id']}"

    for name, tables in TABLES.items():

        def finished(name: str = name) -> dict[str, Any] | None:
            outcome = jobs()[name]["last_outcome"]
            return outcome if outcome and outcome["slot"] == slots[name] else None

        outcome = eventually(finished, f"{name}'s outcome")
        assert outcome["status"] == "done", outcome
        assert set(outcome["counts"]) == tables | {"unfinished"}
        assert outcome["counts"]["unfinished"] == 0

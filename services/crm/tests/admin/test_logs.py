"""The audit log's filters and pages, and the system log: dead letters from the ``DLQ``
stream and integration failures other code records."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import nats
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm.audit import record_dead_letter, record_integration_failure, register_system_log
from crm.audit.service import record_change
from jggl_common.bus import EventPublisher, RetryPolicy, ServiceBus
from jggl_common.contracts import DeadLetter, DeadLetterData, utcnow
from jggl_common.db import session_scope
from jggl_common.streams import SCHEDULER, ensure_streams
from jggl_common.testing import start_nats_server

from ..api.factories import create_user
from .conftest import Api, eventually


async def _walk(api: Api, path: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        page = await api.client.get(path, params={**params, **({"cursor": cursor} if cursor else {})}, headers=headers)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


async def test_the_audit_log_filters_and_pages_newest_first(api: Api) -> None:
    start = utcnow()
    async with session_scope(api.sessions) as session:
        alice = await create_user(session, role="admin")
        bob = await create_user(session, role="admin")
        for number in range(5):
            await record_change(
                session,
                alice if number % 2 == 0 else bob,
                action="setting.set",
                key="sla.minutes" if number < 3 else "gemini.model",
                old=str(number),
                new=str(number + 1),
                secret=False,
                client_address="10.0.0.1",
            )
    headers = api.headers(alice)
    everything = await _walk(api, "/api/audit-log", headers, limit=2)
    assert [item["new_value"] for item in everything] == ["5", "4", "3", "2", "1"]
    assert len({item["id"] for item in everything}) == 5

    by_key = await _walk(api, "/api/audit-log", headers, key="gemini.model", limit=1)
    assert [item["new_value"] for item in by_key] == ["5", "4"]
    by_id = await _walk(api, "/api/audit-log", headers, actor=str(bob.id))
    assert [item["actor_email"] for item in by_id] == [bob.email, bob.email]
    by_email = await _walk(api, "/api/audit-log", headers, actor=alice.email.upper())
    assert [item["new_value"] for item in by_email] == ["5", "3", "1"]
    later = (start + timedelta(hours=1)).isoformat()
    assert await _walk(api, "/api/audit-log", headers, **{"from": later}) == []
    assert len(await _walk(api, "/api/audit-log", headers, **{"from": start.isoformat(), "to": later})) == 5

    assert (
        await api.client.get("/api/audit-log", params={"cursor": "forged.cursor"}, headers=headers)
    ).status_code == 400
    system_cursor = (await api.client.get("/api/audit-log", params={"limit": 1}, headers=headers)).json()["next_cursor"]
    wrong_list = await api.client.get("/api/system-log", params={"cursor": system_cursor}, headers=headers)
    assert wrong_list.status_code == 400
    assert (await api.client.get("/api/audit-log", params={"actor": "bob"}, headers=headers)).status_code == 422


async def test_integration_failures_are_recorded_once_per_key_and_listed(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
        assert await record_integration_failure(
            session, "meta.send", "(#190) Error validating access token", {"code": 190}, dedupe_key="send:1"
        )
        assert not await record_integration_failure(session, "meta.send", "again", {}, dedupe_key="send:1")
        assert await record_integration_failure(session, "graph.profile", "timeout\x00 with a NUL", None)
        assert await record_integration_failure(session, "graph.profile", "timeout", None)
    headers = api.headers(admin)
    items = (await api.client.get("/api/system-log", headers=headers)).json()["items"]
    assert [(item["source"], item["kind"]) for item in items] == [
        ("graph.profile", "integration_failure"),
        ("graph.profile", "integration_failure"),
        ("meta.send", "integration_failure"),
    ]
    assert items[2]["details"] == {"code": 190}
    assert items[1]["message"] == "timeout\ufffd with a NUL"
    only = (await api.client.get("/api/system-log", params={"source": "meta.send"}, headers=headers)).json()["items"]
    assert [item["message"] for item in only] == ["(#190) Error validating access token"]
    assert (await api.client.get("/api/system-log", params={"kind": "dead_letter"}, headers=headers)).json() == {
        "items": [],
        "next_cursor": None,
    }
    assert len(await _walk(api, "/api/system-log", headers, limit=1)) == 3


async def test_recording_a_dead_letter_twice_keeps_one_entry(sessions: async_sessionmaker[AsyncSession]) -> None:
    letter = DeadLetter(
        producer="ai",
        data=DeadLetterData(
            service="ai",
            consumer="ai-transcripts",
            original_subject="crm.message.received",
            payload="{}",
            deliveries=5,
            error="KeyError: 'deal'",
        ),
    )
    async with session_scope(sessions) as session:
        assert await record_dead_letter(session, letter)
    async with session_scope(sessions) as session:
        assert not await record_dead_letter(session, letter)
        count = (await session.execute(text("SELECT count(*) FROM system_log"))).scalar_one()
    assert count == 1


@pytest.mark.timeout(60)
async def test_dead_letters_on_the_dlq_stream_show_up_in_the_system_log(api: Api, tmp_path: Path) -> None:
    # A server of the test's own: a consumer of dlq.> on the shared one would also read
    # every dead letter other tests and earlier runs left there.
    proc, port = start_nats_server(tmp_path / "js")
    url = f"nats://127.0.0.1:{port}"
    nc = await nats.connect(url)
    async with session_scope(api.sessions) as session:
        admin = await create_user(session, role="admin")
    headers = api.headers(admin)
    system_bus = ServiceBus(url, "crm")
    failing_bus = ServiceBus(url, "scheduler")
    try:
        await ensure_streams(nc.jetstream())
        register_system_log(system_bus, api.sessions)

        @failing_bus.consumer(  # type: ignore[untyped-decorator]
            durable="ticks",
            stream=SCHEDULER,
            subject="scheduler.tick.>",
            policy=RetryPolicy(max_deliveries=2, backoff=(0.05,)),
        )
        async def on_tick(body: dict[str, Any]) -> None:
            raise RuntimeError("the digest template is missing")

        await system_bus.broker.start()
        await failing_bus.broker.start()
        publisher = EventPublisher(nc)
        # A dead letter published by some service...
        letter = DeadLetter(
            producer="notifier",
            correlation_id="corr-1",
            data=DeadLetterData(
                service="notifier",
                consumer="notifier-deals",
                original_subject="crm.deal.created",
                original_stream="CRM",
                original_sequence=42,
                payload='{"id": "e1"}',
                deliveries=5,
                error="TelegramBadRequest: chat not found",
            ),
        )
        await publisher.publish(letter, "dlq.notifier.crm.deal.created")
        # ...one made by the bus itself when a consumer gives up...
        await nc.publish("scheduler.tick.digest", b'{"slot": "2026-01-01T09:00"}', headers={"Nats-Msg-Id": "tick-1"})
        # ...and something on dlq.> that is not a dead letter at all.
        await nc.publish("dlq.mystery.x", b"not json", headers={"Nats-Msg-Id": "junk-1"})
        await nc.flush()

        async def three_entries() -> bool:
            page = (await api.client.get("/api/system-log", headers=headers)).json()
            return len(page["items"]) >= 3

        await eventually(three_entries, 20, "three system log entries")
        await asyncio.sleep(0.3)  # nothing else (no duplicate) arrives
        items = (await api.client.get("/api/system-log", headers=headers)).json()["items"]
    finally:
        await failing_bus.broker.stop()
        await system_bus.broker.stop()
        await nc.close()
        proc.terminate()
        proc.wait(10)

    assert len(items) == 3
    by_source = {item["source"]: item for item in items}
    notifier = by_source["notifier"]
    assert (notifier["kind"], notifier["subject"], notifier["deliveries"]) == ("dead_letter", "crm.deal.created", 5)
    assert notifier["message"] == "TelegramBadRequest: chat not found"
    assert notifier["occurred_at"].startswith(letter.occurred_at.isoformat()[:19])
    assert notifier["details"]["consumer"] == "notifier-deals"
    assert notifier["details"]["original_sequence"] == 42
    assert notifier["details"]["correlation_id"] == "corr-1"
    assert json.loads(notifier["details"]["payload"]) == {"id": "e1"}
    scheduler = by_source["scheduler"]
    assert (scheduler["subject"], scheduler["deliveries"]) == ("scheduler.tick.digest", 2)
    assert scheduler["message"] == "RuntimeError: the digest template is missing"
    junk = by_source["dlq"]
    assert junk["kind"] == "integration_failure"
    assert junk["message"].startswith("unreadable dead letter on dlq.mystery.x")
    assert junk["details"]["payload"] == "not json"

"""Ingest with a broken dependency, on private servers this test starts and stops.

Redis down: webhooks are still accepted and stored (JetStream deduplicates alone), and
``/readyz`` stays 200, "degraded".
NATS down: 503 quickly, so Meta retries; once NATS is back every retry is stored, once.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from jggl_common.testing import free_port, start_nats_server, start_redis_server


async def _wait_ready(ingest, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        response = await ingest.client.get("/readyz")
        if response.status_code == 200:
            ready: dict[str, Any] = response.json()
            return ready
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready after {timeout}s: {response.json()}")
        await asyncio.sleep(0.1)


def _mids(payload: dict[str, Any]) -> list[str]:
    return [item["message"]["mid"] for entry in payload["entry"] for item in entry["messaging"]]


async def test_with_redis_stopped_webhooks_are_still_accepted_and_stored(start_ingest, meta, stream) -> None:
    proc, port = start_redis_server()
    try:
        async with start_ingest(redis_url=f"redis://127.0.0.1:{port}/0") as ingest:
            page, first = meta.messages(1)
            assert (await ingest.post_meta(first)).status_code == 200
            assert (await ingest.metrics()).value("ingest_redis_available") == 1

            proc.terminate()
            proc.wait(10)
            later = [meta.webhook("page", [meta.entry(page, [meta.text(page), meta.text(page)])]) for _ in range(3)]
            statuses = [(await ingest.post_meta(p)).status_code for p in later]
            repeat = await ingest.post_meta(later[0])
            ready = await ingest.client.get("/readyz")
            metrics = await ingest.metrics()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)

    assert statuses == [200, 200, 200]
    assert repeat.status_code == 200
    stored = await stream.meta_events(page)
    assert Counter(m.data["mid"] for m in stored) == Counter(_mids(first) + [m for p in later for m in _mids(p)])
    # Redis is optional: the pod stays in the Service, degraded, and the metric says why.
    assert ready.status_code == 200
    assert ready.json() == {"status": "degraded", "checks": {"nats": "ok", "redis": "down"}}
    assert metrics.value("jggl_dependency_up", dependency="redis", required="false") == 0
    assert metrics.value("jggl_dependency_up", dependency="nats", required="true") == 1
    assert metrics.value("ingest_redis_available") == 0


async def test_with_nats_stopped_webhooks_get_503_and_retries_after_it_returns_are_stored_once(
    start_ingest, stream_at, meta, tmp_path
) -> None:
    store = tmp_path / "js"
    port = free_port()
    proc, _ = start_nats_server(store, port)
    procs = [proc]
    url = f"nats://127.0.0.1:{port}"
    accepted: list[dict[str, Any]] = []
    try:
        async with start_ingest(nats_url=url, publish_timeout_seconds=1.0) as ingest:
            _, before_outage = meta.messages(2)
            assert (await ingest.post_meta(before_outage)).status_code == 200
            accepted.append(before_outage)

            proc.terminate()
            proc.wait(10)
            _, during_outage = meta.messages(2)
            started = time.monotonic()
            refused = await ingest.post_meta(during_outage)
            refused_in = time.monotonic() - started
            refused_again = await ingest.post_meta(during_outage)
            not_ready = await ingest.client.get("/readyz")

            restarted, _ = start_nats_server(store, port)
            procs.append(restarted)
            ready = await _wait_ready(ingest)
            retried = await ingest.post_meta(during_outage)
            _, after_outage = meta.messages(2)
            after = await ingest.post_meta(after_outage)
            accepted += [during_outage, after_outage]

        async with stream_at(url) as stream:
            stored = await stream.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)

    assert refused.status_code == 503
    assert refused_in < 5
    assert "retry" in refused.json()["detail"]
    assert refused_again.status_code == 503
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["nats"] == "down"
    assert ready["checks"] == {"nats": "ok", "redis": "ok"}
    assert (retried.status_code, after.status_code) == (200, 200)
    assert Counter(m.data["mid"] for m in stored) == Counter(mid for p in accepted for mid in _mids(p))


async def test_stopping_ingest_while_nats_is_down_finishes_promptly(start_ingest, tmp_path) -> None:
    proc, port = start_nats_server(tmp_path / "js")
    try:
        async with start_ingest(nats_url=f"nats://127.0.0.1:{port}") as ingest:
            proc.terminate()
            proc.wait(10)
            for _ in range(50):
                if not ingest.app.state.ingest.publisher.connected:
                    break
                await asyncio.sleep(0.05)
            started = time.monotonic()
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)

    assert stopped_in < 5


async def test_ingest_started_before_nats_answers_503_until_nats_is_reachable(start_ingest, meta, tmp_path) -> None:
    port = free_port()
    procs = []
    try:
        async with start_ingest(nats_url=f"nats://127.0.0.1:{port}", wait_connected=False) as ingest:
            _, payload = meta.messages(1)
            early = await ingest.post_meta(payload)
            early_ready = await ingest.client.get("/readyz")

            proc, _ = start_nats_server(tmp_path / "js", port)
            procs.append(proc)
            await _wait_ready(ingest)
            later = await ingest.post_meta(payload)
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)

    assert early.status_code == 503
    assert early_ready.json()["checks"]["nats"] == "down"
    assert later.status_code == 200


async def test_a_nats_server_that_lost_its_storage_gets_the_streams_again(
    start_ingest, stream_at, meta, tmp_path
) -> None:
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    first, _ = start_nats_server(tmp_path / "old", port)
    procs = [first]
    try:
        async with start_ingest(nats_url=url) as ingest:
            _, before = meta.messages(1)
            assert (await ingest.post_meta(before)).status_code == 200
            first.terminate()
            first.wait(10)
            # Same address, empty storage: the INGEST stream no longer exists.
            fresh, _ = start_nats_server(tmp_path / "new", port)
            procs.append(fresh)
            await _wait_ready(ingest)
            _, after = meta.messages(1)
            status = None
            for _ in range(50):
                status = (await ingest.post_meta(after)).status_code
                if status == 200:
                    break
                await asyncio.sleep(0.1)
        async with stream_at(url) as stream:
            stored = await stream.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)

    assert status == 200
    assert [m.data["mid"] for m in stored] == _mids(after)

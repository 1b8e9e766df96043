"""Per-address rate limit, and what ops see on /metrics, /healthz and /readyz."""

from __future__ import annotations

import gc


async def test_the_request_over_the_limit_gets_429_and_is_counted(start_ingest, meta, stream) -> None:
    async with start_ingest(rate_limit_per_minute=5) as ingest:
        before = await ingest.metrics()
        allowed = [(await ingest.post_meta(meta.messages(1)[1])).status_code for _ in range(5)]
        page, payload = meta.messages(1)
        limited = await ingest.post_meta(payload)
        forwarded = await ingest.post_meta(payload, headers={"X-Forwarded-For": "203.0.113.9"})
        telegram = await ingest.post_telegram({"update_id": 1})
        after = await ingest.metrics()

    assert allowed == [200] * 5
    assert limited.status_code == 429
    assert limited.headers["content-type"].startswith("application/json")
    assert "too many requests" in limited.json()["detail"]
    # The forwarded-for header is not trusted by default: it does not escape the limit.
    assert forwarded.status_code == 429
    assert telegram.status_code == 429
    assert await stream.meta_events(page) == []
    rejected = after.value("ingest_webhooks_rejected_total", source="meta", reason="rate_limited") - before.value(
        "ingest_webhooks_rejected_total", source="meta", reason="rate_limited"
    )
    assert rejected == 2


async def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_limit(start_ingest, meta) -> None:
    # The test client connects from 127.0.0.1: the ingress; 10.0.0.0/8 are the proxies behind it.
    async with start_ingest(rate_limit_per_minute=2, forwarded_allow_ips="127.0.0.1,10.0.0.0/8") as ingest:
        first = [
            (await ingest.post_meta(meta.messages(1)[1], headers={"X-Forwarded-For": "198.51.100.1, 10.0.0.1"}))
            for _ in range(3)
        ]
        second = await ingest.post_meta(meta.messages(1)[1], headers={"X-Forwarded-For": "198.51.100.2"})

    assert [r.status_code for r in first] == [200, 200, 429]
    assert second.status_code == 200


async def test_an_address_the_client_forged_does_not_escape_its_limit(start_ingest, meta) -> None:
    # The client sends X-Forwarded-For of its own; the proxy appends the address it saw.
    async with start_ingest(rate_limit_per_minute=2, forwarded_allow_ips="127.0.0.1") as ingest:
        answers = [
            await ingest.post_meta(meta.messages(1)[1], headers={"X-Forwarded-For": f"203.0.113.{i}, 198.51.100.7"})
            for i in range(3)
        ]
        other = await ingest.post_meta(meta.messages(1)[1], headers={"X-Forwarded-For": "203.0.113.1, 198.51.100.8"})

    assert [r.status_code for r in answers] == [200, 200, 429]
    assert other.status_code == 200


async def test_without_trusted_proxies_the_peer_is_the_client(start_ingest, meta) -> None:
    async with start_ingest(rate_limit_per_minute=1) as ingest:
        first = await ingest.post_meta(meta.messages(1)[1], headers={"X-Forwarded-For": "198.51.100.1"})
        second = await ingest.post_meta(meta.messages(1)[1], headers={"X-Forwarded-For": "198.51.100.2"})

    assert (first.status_code, second.status_code) == (200, 429)


async def test_metrics_count_published_events_and_publish_time(ingest, meta) -> None:
    before = await ingest.metrics()

    response = await ingest.post_meta(meta.messages(2)[1])

    assert response.status_code == 200
    after = await ingest.metrics()

    def grew(name: str, **labels: str) -> float:
        return float(after.value(name, **labels) - before.value(name, **labels))

    assert grew("ingest_events_published_total", kind="message", object="page") == 2
    assert grew("ingest_publish_seconds_count") == 1
    assert grew("ingest_publish_seconds_sum") > 0
    assert grew("ingest_webhooks_received_total", source="meta") == 1


async def test_refusals_are_counted_by_reason(ingest, meta) -> None:
    before = await ingest.metrics()
    _, payload = meta.messages(1)

    await ingest.post_meta(payload, signature=None)
    await ingest.post_meta(payload, signature="sha256=" + "0" * 64)
    await ingest.post_meta(b"{", signature=meta.sign(b"{"))

    after = await ingest.metrics()
    for reason in ("signature_missing", "signature_invalid", "malformed"):
        labels = {"source": "meta", "reason": reason}
        assert (
            after.value("ingest_webhooks_rejected_total", **labels)
            - before.value("ingest_webhooks_rejected_total", **labels)
            == 1
        ), reason
    assert after.value("ingest_events_published_total") == before.value("ingest_events_published_total")


async def test_health_and_readiness_with_both_dependencies_up(ingest) -> None:
    health = await ingest.client.get("/healthz")
    ready = await ingest.client.get("/readyz")

    assert health.status_code == 200
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"nats": "ok", "redis": "ok"}}


async def test_once_started_the_apps_objects_are_out_of_the_periodic_full_collections(ingest) -> None:
    # Frozen at start-up: no collection walks it any more (gc.get_objects lists every
    # generation a collection walks, not the frozen objects).
    assert gc.get_freeze_count() > 0
    assert all(ingest.app is not obj for obj in gc.get_objects())

"""Meta delivers at least once: a repeated item is acknowledged again but stored once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from redis.asyncio import Redis

from ingest.meta import split_webhook
from jggl_common.testing import start_redis_server


async def test_the_same_webhook_twice_stores_each_item_once(ingest, meta, stream) -> None:
    page, payload = meta.messages(3)
    before = await ingest.metrics()

    first = await ingest.post_meta(payload)
    second = await ingest.post_meta(payload)

    assert (first.status_code, second.status_code) == (200, 200)
    stored = await stream.meta_events(page)
    assert sorted(m.data["mid"] for m in stored) == sorted(
        item["message"]["mid"] for item in payload["entry"][0]["messaging"]
    )
    after = await ingest.metrics()
    assert after.value("ingest_duplicates_total") - before.value("ingest_duplicates_total") == 3
    published = after.value("ingest_events_published_total", object="page", kind="message") - before.value(
        "ingest_events_published_total", object="page", kind="message"
    )
    assert published == 3


async def test_fifty_concurrent_copies_store_each_item_once(ingest, meta, stream) -> None:
    page, payload = meta.messages(2)
    body = meta.encode(payload)
    before = await ingest.metrics()

    responses = await asyncio.gather(*(ingest.post_meta(body) for _ in range(50)))

    assert [r.status_code for r in responses] == [200] * 50
    stored = await stream.meta_events(page)
    assert Counter(m.data["mid"] for m in stored) == Counter(
        {item["message"]["mid"]: 1 for item in payload["entry"][0]["messaging"]}
    )
    after = await ingest.metrics()
    assert after.value("ingest_duplicates_total") - before.value("ingest_duplicates_total") == 49 * 2


async def test_items_that_differ_only_in_what_meta_changed_are_different_items(ingest, meta, stream) -> None:
    page, customer, mid = meta.new_id(), meta.new_id(), meta.new_mid()
    base = {"sender": {"id": customer}, "recipient": {"id": page}, "timestamp": 1767225600000}
    message = {**base, "message": {"mid": mid, "text": "hi"}}
    deleted = {**base, "timestamp": 1767225600500, "message": {"mid": mid, "is_deleted": True}}
    edits = [
        {**base, "timestamp": 1767225600100 + n, "message_edit": {"mid": mid, "text": f"hi {n}", "num_edit": n}}
        for n in (1, 2)
    ]
    reactions = [
        {**base, "timestamp": 1767225600300, "reaction": {"mid": mid, "action": action, "reaction": "love"}}
        for action in ("react", "unreact")
    ]
    items = [message, deleted, *edits, *reactions]

    first = await ingest.post_meta(meta.webhook("instagram", [meta.entry(page, items)]))
    again = await ingest.post_meta(meta.webhook("instagram", [meta.entry(page, items[::-1])]))

    assert (first.status_code, again.status_code) == (200, 200)
    stored = await stream.meta_events(page)
    assert len(stored) == len(items)
    assert all(any(m.data["item"] == item for m in stored) for item in items)


async def test_a_fresh_item_repeated_is_caught_by_jetstream_and_an_old_one_by_redis(ingest, meta, stream) -> None:
    page = meta.new_id()
    now_ms = int(time.time() * 1000)
    fresh = meta.webhook("page", [meta.entry(page, [{**meta.text(page), "timestamp": now_ms}])])
    old = meta.webhook("page", [meta.entry(page, [{**meta.text(page), "timestamp": now_ms - 3600_000}])])
    before = await ingest.metrics()

    for payload in (fresh, old):
        assert (await ingest.post_meta(payload)).status_code == 200
    await asyncio.sleep(0.2)  # the Redis keys are written just after the answer
    for payload in (fresh, old):
        assert (await ingest.post_meta(payload)).status_code == 200

    after = await ingest.metrics()
    assert len(await stream.meta_events(page)) == 2

    def grew(layer: str) -> float:
        return float(
            after.value("ingest_duplicates_total", layer=layer) - before.value("ingest_duplicates_total", layer=layer)
        )

    assert (grew("jetstream"), grew("redis")) == (1, 1)


async def test_an_old_item_is_looked_for_only_in_the_days_since_meta_wrote_it(start_ingest, meta, stream) -> None:
    proc, port = start_redis_server()
    redis = Redis(port=port)
    try:
        async with start_ingest(redis_url=f"redis://127.0.0.1:{port}/0", dedupe_ttl_seconds=7 * 86_400) as ingest:
            page = meta.new_id()
            now_ms = int(time.time() * 1000)
            days_old = meta.webhook("page", [meta.entry(page, [{**meta.text(page), "timestamp": now_ms - 3 * DAY_MS}])])
            hours_old = meta.webhook(
                "page", [meta.entry(page, [{**meta.text(page), "timestamp": now_ms - 2 * HOUR_MS}])]
            )
            # Meta delivered the first three days ago and ingest stored it then: its key is in that day's set.
            (_, (item,)) = split_webhook(days_old)
            await redis.sadd(_bucket(now_ms - 3 * DAY_MS), item.dedupe_key)
            before = await ingest.metrics()

            await redis.config_resetstat()
            repeat = await ingest.post_meta(days_old)
            days_old_lookups = await _smismember_calls(redis)
            await redis.config_resetstat()
            new = await ingest.post_meta(hours_old)
            hours_old_lookups = await _smismember_calls(redis)
            after = await ingest.metrics()
    finally:
        await redis.aclose()
        proc.terminate()
        proc.wait(10)

    assert (repeat.status_code, new.status_code) == (200, 200)
    stored = await stream.meta_events(page)
    assert [m.data["item"] for m in stored] == hours_old["entry"][0]["messaging"]
    assert (
        after.value("ingest_duplicates_total", layer="redis") - before.value("ingest_duplicates_total", layer="redis")
        == 1
    )
    # One set per day from the timestamp (less an hour) to today, not every day of the week's window.
    assert 1 <= days_old_lookups <= 5
    assert 1 <= hours_old_lookups <= 2


DAY_MS, HOUR_MS = 86_400_000, 3_600_000


def _bucket(at_ms: int) -> str:
    return "ingest:seen:" + time.strftime("%Y%m%d", time.gmtime(at_ms / 1000))


async def _smismember_calls(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_smismember", {}).get("calls", 0))


def test_redis_replies_are_parsed_by_hiredis() -> None:
    # Lookups of old items parse a reply per day set; redis-py's pure-Python parser made
    # them a large share of ingest's CPU. hiredis is a dependency of ingest.
    from redis._parsers import _AsyncHiredisParser
    from redis.asyncio.connection import DefaultParser

    assert DefaultParser is _AsyncHiredisParser

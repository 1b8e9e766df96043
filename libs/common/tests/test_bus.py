"""The consumer helpers against the real NATS server: retry, then DLQ, never lost."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from jggl_common.bus import EventPublisher, PermanentFailure, RetryPolicy, ServiceBus
from jggl_common.contracts import DeadLetter, Envelope
from jggl_common.streams import DLQ, ensure_streams
from jggl_common.streams import SCHEDULER as STREAM
from jggl_common.testing import TEST_NATS_URL


class Ping(Envelope):
    subject = "scheduler.tick.test"
    type: str = "test.ping"
    version: int = 1
    data: dict[str, Any]


async def _dead_letters(js: Any, subject: str, expected: int, timeout: float = 15.0) -> list[DeadLetter]:
    sub = await js.subscribe(subject, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL), ordered_consumer=True)
    found: list[DeadLetter] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(found) < expected and asyncio.get_running_loop().time() < deadline:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                continue
            found.append(DeadLetter.model_validate_json(msg.data))
    finally:
        await sub.unsubscribe()
    return found


async def test_poison_message_ends_in_dlq_after_bounded_retries_and_others_still_flow() -> None:
    tag = secrets.token_hex(4)
    service = f"svc{tag}"
    subject = f"scheduler.tick.test{tag}"
    nc = await nats.connect(TEST_NATS_URL)
    js = nc.jetstream()
    await ensure_streams(js)

    bus = ServiceBus(TEST_NATS_URL, service)
    attempts: dict[str, int] = {}
    handled: list[str] = []

    @bus.consumer(  # type: ignore[untyped-decorator]  # the bus's decorator returns the FastStream subscriber
        durable=f"test_{tag}",
        stream=STREAM,
        subject=subject,
        policy=RetryPolicy(max_deliveries=3, backoff=(0.1, 0.2)),
    )
    async def handle(body: dict[str, Any]) -> None:
        key = body["data"]["key"]
        attempts[key] = attempts.get(key, 0) + 1
        if key == "poison":
            raise ValueError("cannot digest this")
        if key == "malformed":
            raise PermanentFailure("no customer id in this item")
        handled.append(key)

    await bus.broker.start()
    try:
        publisher = EventPublisher(nc)
        for key in ("before", "poison", "malformed", "after"):
            await publisher.publish(Ping(producer="test", data={"key": key}), subject)
        letters = await _dead_letters(js, f"dlq.{service}.>", expected=2)
        for _ in range(50):
            if "after" in handled:
                break
            await asyncio.sleep(0.1)
    finally:
        await bus.broker.stop()
        await js.delete_consumer(STREAM.name, f"test_{tag}")
        await nc.close()

    assert handled == ["before", "after"]
    assert attempts["poison"] == 3
    assert attempts["malformed"] == 1
    assert len(letters) == 2
    by_key = {json.loads(letter.data.payload)["data"]["key"]: letter.data for letter in letters}
    assert by_key["malformed"].deliveries == 1
    assert by_key["malformed"].error == "PermanentFailure: no customer id in this item"
    letter = by_key["poison"]
    assert letter.original_subject == subject
    assert letter.deliveries == 3
    assert letter.error == "ValueError: cannot digest this"
    assert json.loads(letter.payload)["data"] == {"key": "poison"}
    assert letter.original_stream == STREAM.name
    assert DLQ.name == "DLQ"


@pytest.mark.parametrize(("deliveries", "expected"), [(1, 0.1), (2, 0.2), (7, 0.2)])
def test_retry_policy_delay_grows_then_stays(deliveries: int, expected: float) -> None:
    assert RetryPolicy(max_deliveries=9, backoff=(0.1, 0.2)).delay(deliveries) == expected


def test_an_idle_pull_consumers_fetch_timeouts_stay_out_of_the_logs_and_real_failures_do_not() -> None:
    service = f"svc{secrets.token_hex(4)}"
    ServiceBus(TEST_NATS_URL, service)  # the bus owns its consumers' logger
    logger = logging.getLogger(f"{service}.consumer")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    retrying = "Task-7 raised an exception, retrying...\nIf this behavior causes issues..."

    def raised(exc: BaseException) -> Any:
        try:
            raise exc
        except BaseException as caught:
            return (type(caught), caught, caught.__traceback__)

    # What FastStream's supervisor logs when nats-py's fetch raises a bare asyncio.TimeoutError...
    logger.info("callback for Task-7 is being executed...")
    logger.error(retrying, exc_info=raised(TimeoutError()))
    # ...and when the loop fails for a reason worth an operator's eyes.
    logger.error(retrying, exc_info=raised(nats.errors.NoServersError()))
    logger.warning("Received")

    assert seen == [retrying, "Received"]


async def test_a_service_stops_cleanly_while_nats_is_down(private_nats: tuple[Any, int]) -> None:
    """SIGTERM during a NATS outage: the bus cannot drain, and stopping goes on instead of
    failing (what was not acknowledged is delivered again once NATS is back)."""
    proc, port = private_nats
    bus = ServiceBus(f"nats://127.0.0.1:{port}", f"svc{secrets.token_hex(4)}")

    @bus.consumer(durable="stopping", stream=STREAM, subject="scheduler.tick.stopping")  # type: ignore[untyped-decorator]
    async def handle(body: dict[str, Any]) -> None:
        return None

    await bus.connect()
    await bus.broker.start()
    proc.terminate()
    proc.wait(10)
    await asyncio.sleep(1.5)  # the client notices and starts reconnecting

    await asyncio.wait_for(bus.stop(), 15)
    assert bus.broker.connection.is_closed

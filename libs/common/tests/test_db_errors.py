"""A failing SQL statement leaves no customer text or e-mail in the error, the logs or the DLQ."""

from __future__ import annotations

import asyncio
import logging
import secrets
import traceback
from typing import Any

import asyncpg
import nats
import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.bus import EventPublisher, RetryPolicy, ServiceBus
from jggl_common.contracts import DeadLetter, Envelope
from jggl_common.db import HIDDEN, autocommit, driver_connection, scrub_message, session_factory
from jggl_common.streams import SCHEDULER as STREAM
from jggl_common.streams import ensure_streams
from jggl_common.testing import TEST_NATS_URL

EMAIL = "anna.customer@example.com"
CUSTOMER_TEXT = "Здравствуйте, мой номер +7 900 123-45-67"


class Note(Envelope):
    subject = "scheduler.tick.test"
    type: str = "test.note"
    version: int = 1
    data: dict[str, Any]


@pytest.fixture
async def engine(schema_engine: AsyncEngine) -> AsyncEngine:
    """The engine of a schema of this test's own (made by ``jggl_common.db.create_engine``)."""
    async with schema_engine.begin() as conn:
        await conn.execute(text("CREATE TABLE people (email text UNIQUE, amount int, code uuid)"))
        await conn.execute(text("INSERT INTO people (email) VALUES (:email)"), {"email": EMAIL})
    return schema_engine


async def _fail(engine: AsyncEngine, statement: str, **params: Any) -> DBAPIError:
    with pytest.raises(DBAPIError) as caught:
        async with engine.begin() as conn:
            await conn.execute(text(statement), params)
    return caught.value


def _everything_said(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc.args)


async def test_errors_and_their_tracebacks_carry_no_statement_values(engine: AsyncEngine) -> None:
    duplicate = await _fail(engine, "INSERT INTO people (email) VALUES (:email)", email=EMAIL)
    assert isinstance(duplicate, IntegrityError)
    assert getattr(duplicate.orig, "sqlstate", None) == "23505"  # still tells what went wrong
    assert "unique constraint" in str(duplicate)
    assert "[SQL: INSERT INTO" in str(duplicate)
    wrong_type = await _fail(engine, "INSERT INTO people (amount) VALUES (:amount)", amount=CUSTOMER_TEXT)
    server_cast = await _fail(engine, "INSERT INTO people (code) VALUES (CAST(:code AS uuid))", code=CUSTOMER_TEXT)
    for exc in (duplicate, wrong_type, server_cast):
        said = _everything_said(exc)
        assert EMAIL not in said
        assert CUSTOMER_TEXT not in said
        assert "+7 900" not in said
        assert "Здравствуйте" not in said
    assert HIDDEN in str(wrong_type)
    assert HIDDEN in str(server_cast)


async def test_the_drivers_own_connection_raises_scrubbed_errors_too(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session:
        db = await driver_connection(session)
        with pytest.raises(asyncpg.UniqueViolationError) as duplicate:
            await db.execute("INSERT INTO people (email) VALUES ($1)", EMAIL)
    async with autocommit(sessions) as db:
        with pytest.raises(asyncpg.DataError) as wrong_type:
            await db.fetchval("INSERT INTO people (amount) VALUES ($1) RETURNING 1", CUSTOMER_TEXT)
        with pytest.raises(asyncpg.DataError) as many:
            await db.executemany("INSERT INTO people (code) VALUES ($1::uuid)", [(CUSTOMER_TEXT,)])
    assert duplicate.value.sqlstate == "23505"
    assert duplicate.value.constraint_name == "people_email_key"
    for exc in (duplicate.value, wrong_type.value, many.value):
        said = _everything_said(exc)
        assert EMAIL not in said
        assert "Здравствуйте" not in said


def test_scrub_keeps_names_and_drops_quoted_values() -> None:
    assert scrub_message('duplicate key value violates unique constraint "users_email_key"') == (
        'duplicate key value violates unique constraint "users_email_key"'
    )
    assert scrub_message('invalid input syntax for type uuid: "a ""quoted"" secret"') == (
        f"invalid input syntax for type uuid: {HIDDEN}"
    )
    assert scrub_message("invalid input for query argument $2: 'x@y.z' (expected int)\n[SQL: SELECT 1]") == (
        f"invalid input for query argument $2: {HIDDEN}\n[SQL: SELECT 1]"
    )


async def test_a_handler_failing_on_sql_leaves_no_values_in_logs_or_the_dead_letter(
    engine: AsyncEngine, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    tag = secrets.token_hex(4)
    service, subject = f"svc{tag}", f"scheduler.tick.test{tag}"
    nc = await nats.connect(TEST_NATS_URL)
    js = nc.jetstream()
    await ensure_streams(js)
    bus = ServiceBus(TEST_NATS_URL, service)

    @bus.consumer(  # type: ignore[untyped-decorator]  # the bus's decorator returns the FastStream subscriber
        durable=f"test_{tag}", stream=STREAM, subject=subject, policy=RetryPolicy(max_deliveries=2)
    )
    async def handle(body: dict[str, Any]) -> None:
        async with engine.begin() as conn:
            # The customer's text lands where a number belongs: the driver refuses it.
            await conn.execute(
                text("INSERT INTO people (email, amount) VALUES (:email, :amount)"),
                {"email": body["data"]["email"], "amount": body["data"]["text"]},
            )

    caplog.set_level(logging.INFO)
    sub = await js.subscribe(
        f"dlq.{service}.>", config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL), ordered_consumer=True
    )
    await bus.broker.start()
    try:
        await EventPublisher(nc).publish(Note(producer="test", data={"email": EMAIL, "text": CUSTOMER_TEXT}), subject)
        letter = DeadLetter.model_validate_json((await sub.next_msg(timeout=20)).data)
    finally:
        await sub.unsubscribe()
        await bus.broker.stop()
        await js.delete_consumer(STREAM.name, f"test_{tag}")
        await nc.close()
    await asyncio.sleep(0.1)

    assert letter.data.deliveries == 2
    assert letter.data.error.startswith("DBAPIError: ")
    assert "invalid input for query argument" in letter.data.error
    assert EMAIL not in letter.data.error
    assert "Здравствуйте" not in letter.data.error  # asyncpg quotes the start of a long value
    # The dead letter keeps the message itself (to replay it), never the error's values.
    assert EMAIL in letter.data.payload
    logs = capsys.readouterr().out + caplog.text
    assert "message moved to the DLQ" in logs
    assert "DBAPIError" in logs
    assert EMAIL not in logs
    assert "Здравствуйте" not in logs

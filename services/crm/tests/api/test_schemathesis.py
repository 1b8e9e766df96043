"""Property-based fuzzing of every operation in the OpenAPI schema: no input gives a 5xx,
and no answer contradicts the schema (its status, content type, headers and body are all
documented), since the web app's client is generated from it.

Schemathesis generates valid and invalid requests from the app's own schema and sends
them in-process (its ASGI transport runs the app on one event loop of its own, so the app
here makes its own engine and Redis client instead of borrowing the fixtures'). Every
operation the schema lists is exercised, each with a fresh admin token (signing out, which
some operations do, revokes the tokens issued before); then short stateful scenarios follow
the links schemathesis infers between operations (a created task, then changed...). The run
is bounded by its example counts (well under a minute on two idle cores).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Any

import nats
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.api import create_app
from crm.live.streams import LiveEvents
from crm.models import User
from jggl_common.contracts import utcnow
from jggl_common.db import create_engine, session_factory, session_scope
from jggl_common.streams import ensure_streams
from jggl_common.testing import TEST_DATABASE_URL

from .conftest import api_settings
from .factories import create_contact, create_deal, create_message, create_user

EXAMPLES_PER_OPERATION = 15
STATEFUL_SCENARIOS = 8
STATEFUL_STEPS = 6
NOT_STATEFUL = r"^/api/(users|auth|events|me)"
"""Left out of the scenarios: changing users, signing out and the stream end the session they run with."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


async def _seed(schema: str) -> tuple[User, list[int]]:
    engine = create_engine(TEST_DATABASE_URL, schema, pool_size=1)
    try:
        async with session_scope(session_factory(engine)) as session:
            admin = await create_user(session, role="admin")
            manager = await create_user(session)
            contact = await create_contact(session, name="Иван Fuzz")
            deals = [
                await create_deal(session, contact=contact, status="lost", lost_reason="later"),
                await create_deal(session, contact=contact, assignee=manager, amount="10"),
                await create_deal(session, comment="fuzz target", last_message_text="hello"),
            ]
            await create_message(session, deals[1], text="привет")
        return admin, [deal.id for deal in deals if deal.id is not None]
    finally:
        await engine.dispose()


def _order(operation: Any) -> tuple[int, str]:
    # Changing users last: a generated request may change the admin's own password or
    # deactivate them, which (rightly) ends every session of theirs for good.
    return (1 if operation.path.startswith("/api/users/") else 0), operation.label


def _live_events(nats_url: str) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Live events on the app's own event loop (schemathesis runs the app on a loop of its own)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        nc = await nats.connect(nats_url)
        await ensure_streams(nc.jetstream())
        app.state.crm.live = LiveEvents(nc, heartbeat_seconds=0.2)
        try:
            yield
        finally:
            app.state.crm.live.close()
            await nc.close()

    return lifespan


@pytest.mark.timeout(300)
def test_no_generated_request_gets_a_server_error_or_an_undocumented_answer(
    crm_engine: AsyncEngine, pg_schema: str, private_nats: tuple[Any, int]
) -> None:
    admin, _ = asyncio.run(_seed(pg_schema))
    # Limits far above what the run sends: every request passes the limiter and reaches its endpoint.
    unlimited = {"api_rate_per_minute": 10**6, "api_rate_burst": 10**6}
    app = create_app(
        api_settings(pg_schema, **unlimited),
        lifespan_extras=[_live_events(f"nats://127.0.0.1:{private_nats[1]}")],
    )
    assert admin.id is not None
    tokens = app.state.crm.tokens

    def headers_for(operation: Any) -> dict[str, str]:
        if operation.path != "/api/events":
            return {"Authorization": f"Bearer {tokens.issue(admin.id, admin.password_hash)}"}
        # An event stream ends when its session does: a token with a second or two left
        # makes each generated request's stream end, so its whole answer can be checked.
        ending = tokens.issue(admin.id, admin.password_hash, now=utcnow() - timedelta(seconds=tokens.ttl_seconds - 2))
        return {"Authorization": f"Bearer {ending}"}

    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), [r.err() for r in results if isinstance(r, Err)]
    operations = sorted((result.ok() for result in results if isinstance(result, Ok)), key=_order)
    assert len(operations) >= 40
    failures: list[str] = []
    answered: dict[str, set[int]] = {operation.label: set() for operation in operations}
    try:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=3 if operation.path == "/api/events" else EXAMPLES_PER_OPERATION,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def check(case: schemathesis.Case[Any]) -> None:
                    sent = headers_for(case.operation)
                    response = case.call(headers=sent, timeout=30)
                    answered[case.operation.label].add(response.status_code)
                    try:
                        case.validate_response(response, checks=CHECKS, headers=sent)
                    except (Exception, BaseExceptionGroup) as exc:
                        problem = " | ".join(line for line in str(exc).strip().splitlines()[:6] if line.strip())
                        failures.append(f"{response.status_code} {problem}\n    {case.as_curl_command(headers=sent)}")

                try:
                    check()
                except Unsatisfiable:
                    # Nothing to make invalid (an operation without parameters or body).
                    assert mode is GenerationMode.NEGATIVE, operation.label
        _run_scenarios(schema, headers_for, failures)
    finally:
        asgi.shutdown_lifespans()
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:40])
    # Every operation was reached past authentication at least once (not only 401s or 429s).
    unreached = sorted(label for label, statuses in answered.items() if statuses <= {401, 429})
    assert not unreached, f"answered only 401/429: {unreached}"


def _run_scenarios(schema: Any, headers_for: Callable[[Any], dict[str, str]], failures: list[str]) -> None:
    """A few short chains of calls along the links schemathesis infers (an id one answer gives,
    used by the next call); each answer checked like the rest."""
    machine = schema.exclude(path_regex=NOT_STATEFUL).as_state_machine()
    steps: list[str] = []

    class Scenarios(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            steps.append(case.operation.label)
            return {"headers": headers_for(case.operation), "timeout": 30}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            sent = headers_for(case.operation)
            try:
                case.validate_response(response, checks=CHECKS, headers=sent)
            except (Exception, BaseExceptionGroup) as exc:
                problem = " | ".join(line for line in str(exc).strip().splitlines()[:6] if line.strip())
                failures.append(f"scenario: {response.status_code} {problem}\n    {case.as_curl_command(headers=sent)}")

    Scenarios.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    # The scenarios ran, and followed links: some took an operation that needs an id from an earlier answer.
    assert len(steps) > STATEFUL_SCENARIOS, steps

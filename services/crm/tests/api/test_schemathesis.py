"""Property-based fuzzing of every operation in the OpenAPI schema: no input gives a 5xx.

Schemathesis generates valid and invalid requests from the app's own schema and sends
them in-process (its ASGI transport runs the app on one event loop of its own, so the app
here makes its own engine and Redis client instead of borrowing the fixtures').
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.python import asgi
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.api import create_app
from crm.models import User
from jggl_common.db import create_engine, session_factory, session_scope
from jggl_common.testing import TEST_DATABASE_URL

from .conftest import api_settings
from .factories import create_contact, create_deal, create_message, create_user

EXAMPLES_PER_OPERATION = 25


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
    # Changing users last: a generated request may change the admin's own password,
    # which (rightly) ends the session the fuzzing runs with.
    return (1 if operation.path.startswith("/api/users/") else 0), operation.label


@pytest.mark.timeout(240)
def test_no_generated_request_gets_a_server_error(crm_engine: AsyncEngine, pg_schema: str) -> None:
    admin, _ = asyncio.run(_seed(pg_schema))
    app = create_app(api_settings(pg_schema))
    assert admin.id is not None
    headers = {"Authorization": f"Bearer {app.state.crm.tokens.issue(admin.id, admin.password_hash)}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = sorted((result.ok() for result in schema.get_all_operations()), key=_order)
    assert len(operations) >= 15
    failures: list[str] = []
    try:
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=EXAMPLES_PER_OPERATION,
                    deadline=None,
                    database=None,
                    derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def check(case: schemathesis.Case) -> None:
                    response = case.call(headers=headers, timeout=30)
                    if response.status_code >= 500:
                        failures.append(f"{response.status_code} {case.as_curl_command(headers=headers)}")

                try:
                    check()
                except Unsatisfiable:
                    # Nothing to make invalid (an operation without parameters or body).
                    assert mode is GenerationMode.NEGATIVE, operation.label
    finally:
        asgi.shutdown_lifespans()
    assert not failures, "\n".join(failures[:10])

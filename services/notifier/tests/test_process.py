"""``python -m notifier migrate`` and the process's operational endpoints."""

from __future__ import annotations

import os
import subprocess
import sys

from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common.migrations import is_current
from jggl_common.testing import TEST_DATABASE_URL
from notifier.config import NotifierSettings
from notifier.migrate import MIGRATIONS
from notifier.process import create_app

from .conftest import APP_KEY, APP_URL, Bus


def environment(pg_schema: str, bus: Bus) -> dict[str, str]:
    return {
        **os.environ,
        "APP_KEY": APP_KEY,
        "NATS_URL": bus.url,
        "APP_URL": APP_URL,
        "DATABASE_URL": TEST_DATABASE_URL,
        "DB_SCHEMA": pg_schema,
        "TELEGRAM_BOT_TOKEN": "",
    }


async def test_migrate_command_brings_the_schema_to_head(schema_engine: AsyncEngine, pg_schema: str, bus: Bus) -> None:
    assert not await is_current(MIGRATIONS, schema_engine)
    done = subprocess.run(
        [sys.executable, "-m", "notifier", "migrate"],
        env=environment(pg_schema, bus),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "at the latest revision" in done.stdout
    assert await is_current(MIGRATIONS, schema_engine)


def test_health_readiness_and_metrics(engine: AsyncEngine, pg_schema: str, bus: Bus) -> None:
    settings = NotifierSettings(
        _env_file=None,
        app_key=APP_KEY,
        nats_url=bus.url,
        app_url=APP_URL,
        database_url=TEST_DATABASE_URL,
        db_schema=pg_schema,
    )
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert "jggl_notifier_notifications_total" in client.get("/metrics").text


async def test_the_migrations_create_exactly_the_models(engine: AsyncEngine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from notifier.models import metadata

    def differences(connection: object) -> list[object]:
        context = MigrationContext.configure(
            connection,  # type: ignore[arg-type]
            opts={"include_object": lambda obj, name, type_, *_: not (type_ == "table" and name == "alembic_version")},
        )
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(differences) == []

"""The scheduler's migrations folder and the commands that apply it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common import migrations

MIGRATIONS = Path(__file__).parent / "migrations"


async def upgrade(engine: AsyncEngine, schema: str) -> None:
    """Bring ``schema`` to the latest revision over ``engine``."""
    await migrations.upgrade(MIGRATIONS, engine, schema)


def upgrade_sync(database_url: str, schema: str) -> None:
    """``alembic upgrade head`` for ``python -m scheduler migrate``."""
    migrations.upgrade_sync(MIGRATIONS, database_url, schema)

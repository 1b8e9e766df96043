"""crm's migrations folder and the commands that apply it."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

from jggl_common import migrations

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str, schema: str) -> Config:
    """An Alembic configuration for crm's migrations in ``schema``."""
    return migrations.alembic_config(MIGRATIONS, database_url, schema)


async def upgrade(engine: AsyncEngine, schema: str, revision: str = "head") -> None:
    """Bring ``schema`` to ``revision`` over ``engine`` (whose search_path is ``schema``)."""
    await migrations.upgrade(MIGRATIONS, engine, schema, revision)


def upgrade_sync(database_url: str, schema: str) -> None:
    """``alembic upgrade head`` for the CLI and start-up."""
    migrations.upgrade_sync(MIGRATIONS, database_url, schema)

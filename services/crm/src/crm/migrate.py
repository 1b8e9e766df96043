"""Database migrations of crm's schema, runnable from code and from the CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str, schema: str) -> Config:
    """An Alembic configuration for crm's migrations in ``schema``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.set_main_option("schema", schema)
    cfg.attributes["schema"] = schema
    return cfg


async def upgrade(engine: AsyncEngine, schema: str, revision: str = "head") -> None:
    """Bring ``schema`` to ``revision`` over ``engine`` (whose search_path is ``schema``)."""
    cfg = alembic_config(str(engine.url), schema)

    def run(connection: object) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


def upgrade_sync(database_url: str, schema: str) -> None:
    """``alembic upgrade head`` for the CLI and start-up."""
    command.upgrade(alembic_config(database_url, schema), "head")


if __name__ == "__main__":  # pragma: no cover
    import os

    upgrade_sync(os.environ["DATABASE_URL"], os.environ.get("DB_SCHEMA", "crm"))
    asyncio.run(asyncio.sleep(0))

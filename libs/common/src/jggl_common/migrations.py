"""Running a service's Alembic migrations inside its own schema, from code or the CLI.

Each service keeps its migrations in a ``migrations`` folder beside its models; its
``env.py`` reads the schema from the configuration built here, so the same revisions run
in the service's schema in production and in a throw-away schema per test.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["alembic_config", "upgrade", "upgrade_sync"]


def alembic_config(migrations: Path, database_url: str, schema: str) -> Config:
    """An Alembic configuration for the migrations in ``migrations``, applied in ``schema``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.set_main_option("schema", schema)
    cfg.attributes["schema"] = schema
    return cfg


async def upgrade(migrations: Path, engine: AsyncEngine, schema: str, revision: str = "head") -> None:
    """Bring ``schema`` to ``revision`` over ``engine`` (whose search_path is ``schema``)."""
    cfg = alembic_config(migrations, str(engine.url), schema)

    def run(connection: object) -> None:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(run)


def upgrade_sync(migrations: Path, database_url: str, schema: str) -> None:
    """``alembic upgrade head`` in ``schema``, for a service's ``migrate`` command."""
    command.upgrade(alembic_config(migrations, database_url, schema), "head")

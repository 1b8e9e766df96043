"""Running a service's Alembic migrations inside its own schema, from code or the CLI.

Each service keeps its migrations in a ``migrations`` folder beside its models; its
``env.py`` reads the schema from the configuration built here, so the same revisions run
in the service's schema in production and in a throw-away schema per test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .db import create_engine
from .logs import get_logger

log = get_logger(__name__)

__all__ = ["alembic_config", "is_current", "run_environment", "upgrade", "upgrade_sync", "wait_until_current"]


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


async def is_current(migrations: Path, engine: AsyncEngine) -> bool:
    """Whether the schema behind ``engine`` is at the latest revision of ``migrations``
    (a service waits for that before it consumes: a deployment may start it first)."""
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory(str(migrations)).get_heads())
    async with engine.connect() as conn:
        exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
        if not exists:
            return False
        applied = set((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())
    return applied == heads


async def wait_until_current(migrations: Path, engine: AsyncEngine, service: str, poll: float = 1.0) -> None:
    """Return once the schema is at the latest revision, saying once that it waits."""
    waited = False
    while not await is_current(migrations, engine):
        if not waited:
            log.warning(
                "waiting for the schema to be migrated", service=service, command=f"python -m {service} migrate"
            )
            waited = True
        await asyncio.sleep(poll)


def upgrade_sync(migrations: Path, database_url: str, schema: str) -> None:
    """``alembic upgrade head`` in ``schema``, for a service's ``migrate`` command."""
    command.upgrade(alembic_config(migrations, database_url, schema), "head")


def _include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # Alembic's own bookkeeping table lives in the same schema; it is not a model.
    return not (type_ == "table" and name == "alembic_version")


def run_environment(metadata: MetaData, default_schema: str) -> None:
    """The body of a service's ``env.py``: run the migrations in the configured schema,
    on the connection :func:`upgrade` hands over, or on one of its own (the CLI)."""
    from alembic import context

    config = context.config
    schema = config.attributes.get("schema") or config.get_main_option("schema") or default_schema

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            include_object=_include_object,
            version_table_schema=schema,
            include_schemas=False,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def standalone() -> None:
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "", schema, pool_size=1)
        async with engine.connect() as conn:
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await conn.commit()
            await conn.run_sync(run)
            await conn.commit()
        await engine.dispose()

    connection = config.attributes.get("connection")
    if connection is not None:
        run(connection)
    else:
        asyncio.run(standalone())

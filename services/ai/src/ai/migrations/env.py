"""Alembic environment: migrations run inside ai's own schema (``search_path``)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from ai.models import metadata
from jggl_common.db import create_engine

config = context.config
SCHEMA = config.attributes.get("schema") or config.get_main_option("schema") or "ai"


def _include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # Alembic's own bookkeeping table lives in the same schema; it is not a model.
    return not (type_ == "table" and name == "alembic_version")


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_object=_include_object,
        version_table_schema=SCHEMA,
        include_schemas=False,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", SCHEMA, pool_size=1)
    async with engine.connect() as conn:
        await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{SCHEMA}"'))
        await conn.commit()
        await conn.run_sync(_run)
        await conn.commit()
    await engine.dispose()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_main())

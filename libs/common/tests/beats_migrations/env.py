"""Alembic environment of the test service in ``test_process.py`` (its own schema)."""

from __future__ import annotations

from sqlalchemy import MetaData

from jggl_common.migrations import run_environment

run_environment(MetaData(), "beats")

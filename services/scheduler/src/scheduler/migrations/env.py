"""Alembic environment: migrations run inside the scheduler's own schema (``search_path``)."""

from __future__ import annotations

from jggl_common.migrations import run_environment
from scheduler.models import metadata

run_environment(metadata, "scheduler")

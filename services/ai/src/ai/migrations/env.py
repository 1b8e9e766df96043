"""Alembic environment: migrations run inside ai's own schema (``search_path``)."""

from __future__ import annotations

from ai.models import metadata
from jggl_common.migrations import run_environment

run_environment(metadata, "ai")

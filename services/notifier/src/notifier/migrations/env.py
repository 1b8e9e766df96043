"""Alembic environment: migrations run inside the notifier's own schema (``search_path``)."""

from __future__ import annotations

from jggl_common.migrations import run_environment
from notifier.models import metadata

run_environment(metadata, "notifier")

"""Alembic environment: migrations run inside crm's own schema (``search_path``)."""

from __future__ import annotations

from crm.models import metadata
from jggl_common.migrations import run_environment

run_environment(metadata, "crm")

#!/usr/bin/env bash
# Regenerates crm's initial schema migration (0001) from the models, into a scratch
# database. Only while the project is unreleased: afterwards every change is a new revision.
set -euo pipefail
cd "$(dirname "$0")/.."
db="jggl_regen_$$"
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
trap 'psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE $db"' EXIT
rm -f services/crm/src/crm/migrations/versions/0001_*.py
mv services/crm/src/crm/migrations/versions/0002_search_and_stages.py /tmp/0002.$$
uv run python - "$db" <<'PY'
import sys
from alembic import command
from crm.migrate import alembic_config
cfg = alembic_config(f"postgresql://postgres@127.0.0.1:5432/{sys.argv[1]}", "crm")
command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
PY
mv /tmp/0002.$$ services/crm/src/crm/migrations/versions/0002_search_and_stages.py
uv run ruff format -q services/crm/src/crm/migrations/versions

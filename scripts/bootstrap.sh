#!/usr/bin/env bash
# Installs what the project needs from the package registries: uv, then the locked
# dependencies of every package of the workspace into .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  echo "installing uv from PyPI..." >&2
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
UV=$(command -v uv || echo "python3 -m uv")
$UV sync --frozen --all-packages --quiet

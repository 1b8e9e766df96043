#!/usr/bin/env bash
# Installs what the project needs from the package registries: uv, then the locked
# dependencies of every package of the workspace into .venv; for the web app, Node.js
# and npm (Debian's, when missing), web/node_modules (`npm ci`, when package-lock.json
# changed or node_modules is missing) and Debian's Chromium for the browser tests; and
# Debian's prometheus package for promtool (the alert rules' checks).
# Quiet, idempotent, and fast when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1 && ! python3 -m uv --version >/dev/null 2>&1; then
  echo "installing uv from PyPI..." >&2
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
UV=$(command -v uv || echo "python3 -m uv")
$UV sync --frozen --all-packages --quiet

# Debian packages, installed only when missing (as root, or through sudo when it asks for no password).
APT_UPDATED=
apt_install() {
  local as=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then as=(sudo -n); else
      echo "bootstrap: $* missing; install it (apt-get install $*) or run this as root" >&2
      return 1
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: $* missing and no apt-get here; install $* with the system's package manager" >&2
    return 1
  fi
  echo "installing $* from Debian's packages..." >&2
  if [ -z "$APT_UPDATED" ]; then
    "${as[@]}" apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  "${as[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The web app: Node.js and npm to build and test it.
missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"

# web/node_modules as package-lock.json says, again only when the lock file changed.
stamp=web/node_modules/.jggl-lock.sha256
lock_sum=$(sha256sum web/package-lock.json | cut -d' ' -f1)
if [ ! -d web/node_modules ] || [ "$(cat "$stamp" 2>/dev/null)" != "$lock_sum" ]; then
  echo "installing the web app's packages (npm ci)..." >&2
  (cd web && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$lock_sum" >"$stamp"
fi

# The browser tests drive Debian's Chromium (never a browser downloaded by a test tool).
[ -x /usr/bin/chromium ] || apt_install chromium

# promtool (Debian's prometheus package) checks and unit-tests deploy/prometheus/alerts.yml.
command -v promtool >/dev/null 2>&1 || apt_install prometheus

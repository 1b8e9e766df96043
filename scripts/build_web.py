"""Builds the web app (``web/dist``) when its sources are newer than the build.

``make run``, ``make demo`` and the browser tests call it so crm serves the current app;
a build that is up to date costs a walk over ``web/src`` (milliseconds). ``--force``
builds anyway. Exits non-zero with npm's output when the build fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
DIST_INDEX = WEB / "dist" / "index.html"
SOURCES = ("src", "public", "index.html", "package.json", "package-lock.json", "vite.config.ts", "tsconfig.json")


def _newest_source() -> float:
    newest = 0.0
    for name in SOURCES:
        path = WEB / name
        if path.is_dir():
            for item in path.rglob("*"):
                if item.is_file():
                    newest = max(newest, item.stat().st_mtime)
        elif path.exists():
            newest = max(newest, path.stat().st_mtime)
    return newest


def stale() -> bool:
    """True when ``web/dist`` is missing or older than one of the app's sources."""
    return not DIST_INDEX.exists() or _newest_source() > DIST_INDEX.stat().st_mtime


def build(force: bool = False, say: bool = True) -> bool:
    """Build ``web/dist`` if stale (or ``force``); True if it built. Raises on failure."""
    if not force and not stale():
        return False
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is missing: run `make install` (scripts/bootstrap.sh) to install Node.js")
    if not (WEB / "node_modules").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=True)
    if say:
        print("[web] building the web app (web/dist)...", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 120
    while True:
        done = subprocess.run([npm, "run", "build", "--silent"], check=False, cwd=WEB, capture_output=True, text=True)
        if done.returncode == 0:
            break
        # Another build of this project is running (vite's lock): wait for it, then look again.
        if "Found another Vite build process" in done.stdout + done.stderr and time.monotonic() < deadline:
            time.sleep(1)
            if not force and not stale():
                return False
            continue
        sys.stderr.write(done.stdout + done.stderr)
        raise RuntimeError(f"the web app's build failed (npm run build exited with {done.returncode})")
    DIST_INDEX.touch()  # the build is as new as the moment it finished, whatever vite copied
    return True


def main() -> int:
    try:
        build(force="--force" in sys.argv[1:])
    except (RuntimeError, subprocess.CalledProcessError) as error:
        print(f"[web] {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

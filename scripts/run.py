"""``make run``: the whole system in the foreground.

Prepares the environment (an ``.env`` with a fresh ``APP_KEY`` on first start), makes sure
PostgreSQL, Redis and NATS answer, migrates crm, creates the first admin, then runs every
service as a child process with its logs on this terminal. Ctrl-C or SIGTERM stops them
all gracefully (each drains its in-flight work); if one dies, the others are stopped too.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / ".env"
SERVICES = ("crm", "ingest", "notifier", "ai", "scheduler")
DEFAULTS = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/jggl",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "NATS_URL": "nats://127.0.0.1:4222",
    "APP_URL": "http://localhost:8000",
    "ADMIN_EMAIL": "admin@jggl.local",
}


def _say(message: str) -> None:
    print(f"[run] {message}", file=sys.stderr, flush=True)


def _load_env() -> dict[str, str]:
    if not ENV_FILE.exists():
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        password = secrets.token_urlsafe(12)
        ENV_FILE.write_text(f"APP_KEY={key}\nADMIN_PASSWORD={password}\n", encoding="utf-8")
        ENV_FILE.chmod(0o600)
        _say(f"created .env with a new APP_KEY; first admin: {DEFAULTS['ADMIN_EMAIL']} / {password}")
    env = dict(os.environ)
    for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            env.setdefault(name.strip(), value.strip())  # the real environment wins
    for name, value in DEFAULTS.items():
        env.setdefault(name, value)
    return env


def _ensure_database(url: str) -> None:
    import asyncio

    import asyncpg

    base, _, name = url.rpartition("/")

    async def create() -> None:
        conn = await asyncpg.connect(base + "/postgres")
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())


def main() -> int:
    env = _load_env()
    subprocess.run(["bash", str(ROOT / "scripts" / "infra.sh"), "ensure"], check=True)
    _ensure_database(env["DATABASE_URL"].split("?")[0])
    python = sys.executable
    runnable = [name for name in SERVICES if importlib.util.find_spec(f"{name}.__main__") is not None]
    if "crm" in runnable:
        _say("migrating crm")
        subprocess.run([python, "-m", "crm", "migrate"], env=env, check=True)
        if env.get("ADMIN_EMAIL") and env.get("ADMIN_PASSWORD"):
            subprocess.run([python, "-m", "crm", "create-admin"], env=env, check=True)
    children: dict[str, subprocess.Popen[bytes]] = {}
    for name in runnable:
        # Own session: a Ctrl-C reaches only this supervisor, which stops each child once.
        children[name] = subprocess.Popen([python, "-m", name], env=env, start_new_session=True)
        _say(f"started {name} (pid {children[name].pid})")

    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    failed = None
    while not stopping:
        for name, child in children.items():
            if child.poll() is not None:
                failed = name
                stopping = True
                _say(f"{name} exited with {child.returncode}; stopping the others")
                break
        time.sleep(0.3)
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for name, child in children.items():
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _say(f"{name} did not stop in time; killing it")
            child.kill()
    _say("stopped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

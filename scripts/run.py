"""``make run``: the whole system in the foreground.

Prepares the environment (an ``.env`` with a fresh ``APP_KEY`` on first start), makes sure
PostgreSQL, Redis and NATS answer, migrates crm, ai, notifier and scheduler, creates the first admin, then runs
every service as a child process with its logs on this terminal. Ctrl-C or SIGTERM stops
them all gracefully (each drains its in-flight work); if one dies, the others are stopped too.

``make run`` uses the NATS server on 127.0.0.1:4222 as it finds it (the one
``scripts/infra.sh`` starts has no users); with ``NATS_<SERVICE>_PASSWORD`` for the five
services in the environment or ``.env`` (``jggl-nats-credentials --env-file .env`` writes
them) each service connects as its own user instead, and a NATS server that
``scripts/infra.sh`` starts loads ``deploy/nats/auth.conf`` with the passwords' bcrypt
hashes, made here at every start: the server is never given a password.

Every child gets the same environment (the real one over ``.env``), except crm's own
signing key: ``AUTH_SIGNING_KEY`` (and ``AUTH_SIGNING_KEY_PREVIOUS``) from the environment
or ``.env``, else one generated once into ``.run/auth_signing_key`` (mode 0600), goes to
crm alone, so no other service can mint a session token. Without a Gemini key
(``GEMINI_API_KEY``, or ``gemini.api_key`` set by an admin) ai analyses with its heuristic
only. ``JGGL_SANDBOX=1`` also runs the sandbox's Gemini fake (``jggl-gemini-fake`` on
127.0.0.1:8092) and points ai at it (``GEMINI_BASE_URL``, ``GEMINI_API_KEY=sandbox``), so
analyses take the Gemini path without a Google account and no request leaves the machine.

``--demo`` (``make demo``): the same system against the sandbox only, with its data in the
database ``jggl_demo`` and its own JetStream server on 127.0.0.1:4223, started with the
deployment's users and permissions (``deploy/nats/auth.conf``, each service its own user
with a password made at start, the server only their bcrypt hashes): the Graph fake
(on 127.0.0.1:8090, echoing sends back to ingest) and the simulated customers
(``jggl_sandbox.demo``), the Telegram fake (8093, the notifier polling it) and the Gemini
fake (8092); a demo admin and two managers whose credentials are printed. The customers
write for ``DEMO_MINUTES`` (20) minutes; the system runs until Ctrl-C.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from jggl_sandbox.nats_credentials import bcrypt_hash, hash_variable, new_credentials, password_variable

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / ".env"
SERVICES = ("crm", "ingest", "notifier", "ai", "scheduler")
MIGRATED = ("crm", "ai", "notifier", "scheduler")  # services with a ``migrate`` command, in this order
GEMINI_FAKE = ("127.0.0.1", 8092)
GRAPH_FAKE = ("127.0.0.1", 8090)
TELEGRAM_FAKE = ("127.0.0.1", 8093)
DEMO_NATS = ("127.0.0.1", 4223)
DEMO_ADMIN = ("admin@demo.local", "demo-admin-pass")
DEMO_MANAGERS = (
    ("anna@demo.local", "demo-anna-pass", "Anna Petrova"),
    ("boris@demo.local", "demo-boris-pass", "Boris Orlov"),
)
DEFAULTS = {
    "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/jggl",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "NATS_URL": "nats://127.0.0.1:4222",
    "APP_URL": "http://localhost:8000",
    "ADMIN_EMAIL": "admin@jggl.local",
}


def _say(message: str) -> None:
    print(f"[run] {message}", file=sys.stderr, flush=True)


def _load_env(demo: bool = False) -> dict[str, str]:
    if not ENV_FILE.exists():
        key = base64.b64encode(secrets.token_bytes(32)).decode()
        password = secrets.token_urlsafe(12)
        ENV_FILE.write_text(f"APP_KEY={key}\nADMIN_PASSWORD={password}\n", encoding="utf-8")
        ENV_FILE.chmod(0o600)
        # The demo has its own admin (printed later); this one is make run's.
        _say(
            "created .env with a new APP_KEY"
            + ("" if demo else f"; first admin: {DEFAULTS['ADMIN_EMAIL']} / {password}")
        )
    env = dict(os.environ)
    for line in ENV_FILE.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            env.setdefault(name.strip(), value.strip())  # the real environment wins
    for name, value in DEFAULTS.items():
        env.setdefault(name, value)
    return env


CRM_ONLY = ("AUTH_SIGNING_KEY", "AUTH_SIGNING_KEY_PREVIOUS")
"""Secrets only crm holds: the other services never see them."""
SIGNING_KEY_FILE = ROOT / ".run" / "auth_signing_key"


def _signing_key(env: dict[str, str]) -> str:
    """crm's AUTH_SIGNING_KEY: the configured one, else the one kept in .run/ (made on first use)."""
    if env.get("AUTH_SIGNING_KEY"):
        return env["AUTH_SIGNING_KEY"]
    if not SIGNING_KEY_FILE.exists():
        SIGNING_KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
        SIGNING_KEY_FILE.touch(mode=0o600)
        SIGNING_KEY_FILE.write_text(base64.b64encode(secrets.token_bytes(32)).decode() + "\n", encoding="utf-8")
        _say(f"created crm's signing key in {SIGNING_KEY_FILE.relative_to(ROOT)}")
    return SIGNING_KEY_FILE.read_text(encoding="utf-8").strip()


NATS_PASSWORDS = {password_variable(service): service for service in SERVICES}
"""The broker's password of each service (deploy/nats/auth.conf): each service gets only
its own, as NATS_USER/NATS_PASSWORD."""
NATS_HASHES = {hash_variable(service): service for service in SERVICES}
"""The passwords' bcrypt hashes: what the NATS server reads, and nothing else does."""
NATS_SERVER = "JetStream server"


def _env_for(service: str, env: dict[str, str]) -> dict[str, str]:
    """What ``service`` is started with: crm's own keys only for crm, each service's NATS
    password only for that service, the passwords' hashes only for the demo's NATS server
    (which gets no password)."""
    own = {name: value for name, value in env.items() if name not in NATS_PASSWORDS and name not in NATS_HASHES}
    if service == NATS_SERVER:
        own |= {name: env[name] for name in NATS_HASHES if name in env}
    password = env.get(password_variable(service))
    if service in SERVICES and password:
        own |= {"NATS_USER": service, "NATS_PASSWORD": password}
    if service == "crm":
        return {**own, "AUTH_SIGNING_KEY": _signing_key(env)}
    return {name: value for name, value in own.items() if name not in CRM_ONLY}


def _hash_nats_passwords(env: dict[str, str]) -> None:
    """``make run`` with NATS users: the bcrypt hash of each service's password, for the
    NATS server ``scripts/infra.sh`` starts (a hash in ``.env`` is made again from its
    password). All five passwords or none: that server needs every user's hash."""
    for name in NATS_HASHES:
        env.pop(name, None)
    missing = [name for name in NATS_PASSWORDS if not env.get(name)]
    if len(missing) == len(NATS_PASSWORDS):
        return
    if missing:
        raise SystemExit(
            f"[run] NATS passwords for some services only: set {', '.join(missing)} too"
            " (jggl-nats-credentials --env-file .env writes all five), or none"
        )
    for name, service in NATS_PASSWORDS.items():
        env[hash_variable(service)] = bcrypt_hash(env[name])


def _infra_env(env: dict[str, str], demo: bool) -> dict[str, str]:
    """What ``scripts/infra.sh`` runs with: no NATS password, and ``make run``'s hashes when
    its services are NATS users (a NATS server it starts then asks for their passwords);
    never the demo's, whose server is its own."""
    base = {name: value for name, value in os.environ.items() if name not in NATS_PASSWORDS and name not in NATS_HASHES}
    return base if demo else base | {name: env[name] for name in NATS_HASHES if name in env}


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


def _sandbox(env: dict[str, str]) -> bool:
    """``JGGL_SANDBOX=1`` (environment or ``.env``): run against the sandbox's fakes."""
    return env.get("JGGL_SANDBOX", "").strip().lower() in {"1", "true", "yes", "on"}


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _listening(
    host: str, port: int, child: subprocess.Popen[bytes], stopping: Callable[[], bool], what: str = "the Gemini fake"
) -> bool:
    """Wait until ``child`` accepts connections on ``host:port``; False if it never does."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not stopping():
        if child.poll() is not None:
            _say(f"{what} exited with {child.returncode} (is {host}:{port} in use?)")
            return False
        if _answers(host, port):
            return True
        time.sleep(0.1)
    if not stopping():
        _say(f"{what} did not start listening on {host}:{port}")
    return False


def _demo_log(what: str) -> IO[bytes]:
    """A log file in .run/ for one of the demo's servers."""
    path = ROOT / ".run" / ("demo-" + what.lower().replace(" ", "-") + ".log")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def _demo_env(env: dict[str, str]) -> dict[str, str]:
    """``--demo``: every outside API is the sandbox's; the demo's own database and settings."""
    from jggl_sandbox.meta_webhooks import DEFAULT_APP_ID, DEFAULT_PAGE_ID

    base = env["DATABASE_URL"].split("?")[0].rpartition("/")[0]
    credentials = new_credentials(SERVICES)
    env.setdefault("LOG_LEVEL", "WARNING")  # the printed credentials stay in sight
    env.update(
        {
            "DATABASE_URL": f"{base}/jggl_demo",
            "NATS_URL": "nats://{}:{}".format(*DEMO_NATS),
            "REDIS_URL": env["REDIS_URL"].rpartition("/")[0] + "/2",
            # Its own broker, so the bucket the broker's permissions name.
            "SETTINGS_BUCKET": "SETTINGS",
            "JGGL_SANDBOX": "1",
            "META_APP_SECRET": "demo-app-secret",
            "META_VERIFY_TOKEN": "demo-verify-token",
            "META_ACCESS_TOKEN": "demo-page-token",
            "META_APP_ID": str(DEFAULT_APP_ID),
            "META_PAGE_ID": DEFAULT_PAGE_ID,
            "META_GRAPH_URL": "http://{}:{}".format(*GRAPH_FAKE),
            "TELEGRAM_BOT_TOKEN": "123456789:demo-bot-token",
            "TELEGRAM_API_URL": "http://{}:{}".format(*TELEGRAM_FAKE),
            "TELEGRAM_MODE": "polling",
            "ADMIN_EMAIL": DEMO_ADMIN[0],
            "ADMIN_PASSWORD": DEMO_ADMIN[1],
            "AI_DEBOUNCE_SECONDS": env.get("AI_DEBOUNCE_SECONDS", "8"),
            "RATE_LIMIT_PER_MINUTE": "6000",
            # Each service its own user on the demo's broker, new passwords every start;
            # the broker gets only their hashes (_env_for).
            **{password_variable(user): login.password for user, login in credentials.items()},
            **{hash_variable(user): login.bcrypt_hash for user, login in credentials.items()},
        }
    )
    return env


def demo_customers(
    python: str,
    app_secret: str,
    *,
    minutes: str,
    graph: tuple[str, int] = GRAPH_FAKE,
    ingest: str = "http://127.0.0.1:8001",
    crm: str = "http://127.0.0.1:8000",
) -> list[str]:
    """The command of the demo's Graph fake and customers (``jggl_sandbox.demo``), with the
    demo admin and managers it creates and prints (tests/browser/test_demo.py runs it too)."""
    command = [
        *(python, "-m", "jggl_sandbox.demo", "--graph-host", graph[0], "--graph-port", str(graph[1])),
        *("--ingest", ingest, "--crm", crm, "--app-secret", app_secret),
        *("--admin", ":".join(DEMO_ADMIN), "--minutes", minutes),
    ]
    for manager in DEMO_MANAGERS:
        command += ["--manager", ":".join(manager)]
    return command


def _demo_helpers(env: dict[str, str], python: str) -> dict[str, tuple[list[str], tuple[str, int]]]:
    """The demo's JetStream server (its own, so nothing it sends reaches ``make run``'s streams
    and nothing left there reaches the demo) and its outside world: the Graph fake with the
    customers, and the Telegram fake."""
    from jggl_common.testing import nats_server_binary

    store = ROOT / ".run" / "demo-nats"
    store.mkdir(parents=True, exist_ok=True)
    nats = [nats_server_binary(), "-a", DEMO_NATS[0], "-p", str(DEMO_NATS[1]), "-js", "-sd", str(store)]
    nats += ["-c", str(ROOT / "deploy" / "nats" / "auth.conf")]  # the deployment's users and permissions
    customers = demo_customers(python, env["META_APP_SECRET"], minutes=env.get("DEMO_MINUTES", "20"))
    telegram = [python, "-m", "jggl_sandbox.telegram_fake", "--host", TELEGRAM_FAKE[0], "--port", str(TELEGRAM_FAKE[1])]
    return {
        NATS_SERVER: (nats, DEMO_NATS),
        "Graph fake and customers": (customers, GRAPH_FAKE),
        "Telegram fake": (telegram, TELEGRAM_FAKE),
    }


def _stop(children: dict[str, subprocess.Popen[bytes]]) -> None:
    """SIGTERM to every child still running; kill those not gone within 20 s."""
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
            child.wait()


def _build_web() -> None:
    """Build ``web/dist`` when the app's sources are newer, so crm serves the current app."""
    import build_web  # scripts/build_web.py, beside this file

    try:
        build_web.build()
    except (RuntimeError, subprocess.CalledProcessError) as error:
        _say(f"web app not rebuilt ({error}); crm serves the last build, if any")


def main() -> int:
    demo = "--demo" in sys.argv[1:]
    env = _load_env(demo)
    if demo:
        env = _demo_env(env)
    else:
        _hash_nats_passwords(env)
    subprocess.run(["bash", str(ROOT / "scripts" / "infra.sh"), "ensure"], env=_infra_env(env, demo), check=True)
    if (ROOT / "web" / "package.json").exists():
        _build_web()
    if not demo and not env.get("META_APP_SECRET"):
        _say(
            "no Meta app configured (META_APP_SECRET); `make demo` runs it all with the sandbox and simulated customers"
        )
    _ensure_database(env["DATABASE_URL"].split("?")[0])
    python = sys.executable
    runnable = [name for name in SERVICES if importlib.util.find_spec(f"{name}.__main__") is not None]
    for name in (n for n in MIGRATED if n in runnable):
        _say(f"migrating {name}")
        subprocess.run([python, "-m", name, "migrate"], env=_env_for(name, env), check=True)
    if "crm" in runnable and env.get("ADMIN_EMAIL") and env.get("ADMIN_PASSWORD"):
        subprocess.run([python, "-m", "crm", "create-admin"], env=_env_for("crm", env), check=True)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    # Before the first child starts: a Ctrl-C during start-up still stops what already runs.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    children: dict[str, subprocess.Popen[bytes]] = {}
    helpers: dict[str, subprocess.Popen[bytes]] = {}  # fakes, stopped after the services using them
    failed = None
    if _sandbox(env) and "ai" in runnable:
        host, port = GEMINI_FAKE
        # The sandbox wins over a real key: nothing is sent to Google.
        env["GEMINI_BASE_URL"] = f"http://{host}:{port}"
        env["GEMINI_API_KEY"] = "sandbox"
        # The module behind the jggl-gemini-fake script, run by this interpreter (no PATH needed).
        fake = [python, "-m", "jggl_sandbox.gemini_fake", "--host", host, "--port", str(port)]
        if _answers(host, port):
            _say(f"JGGL_SANDBOX=1, but {host}:{port} is already in use (another Gemini fake?); stop it first")
            return 1
        log = _demo_log("Gemini fake") if demo else None
        helpers["gemini-fake"] = subprocess.Popen(
            fake, env=_env_for("gemini-fake", env), start_new_session=True, stdout=log, stderr=log
        )
        _say(f"started the Gemini fake on {env['GEMINI_BASE_URL']} (pid {helpers['gemini-fake'].pid})")
        if not _listening(host, port, helpers["gemini-fake"], lambda: stopping):
            failed = "gemini-fake"
            stopping = True
    elif "ai" in runnable and not env.get("GEMINI_API_KEY"):
        _say("ai: no GEMINI_API_KEY, heuristic analyses until an admin sets gemini.api_key (or JGGL_SANDBOX=1)")
    if demo:
        for what, (command, (host, port)) in _demo_helpers(env, python).items():
            if stopping:
                break
            if _answers(host, port):
                _say(f"make demo: {host}:{port} is already in use (another demo?); stop it first")
                failed, stopping = what, True
                break
            # The customers print what a newcomer needs; the servers' own logs go to .run/.
            log = None if "customers" in what else _demo_log(what)
            helpers[what] = subprocess.Popen(
                command, env=_env_for(what, env), start_new_session=True, stdout=log, stderr=log
            )
            _say(f"started the {what} on {host}:{port} (pid {helpers[what].pid})")
            if not _listening(host, port, helpers[what], lambda: stopping, what=f"the {what}"):  # noqa: B023
                failed, stopping = what, True
    for name in runnable:
        if stopping:
            break
        # Own session: a Ctrl-C reaches only this supervisor, which stops each child once.
        children[name] = subprocess.Popen([python, "-m", name], env=_env_for(name, env), start_new_session=True)
        _say(f"started {name} (pid {children[name].pid})")

    while not stopping:
        for name, child in {**helpers, **children}.items():
            if child.poll() is not None:
                failed = name
                stopping = True
                _say(f"{name} exited with {child.returncode}; stopping the others")
                break
        time.sleep(0.3)
    _stop(children)
    _stop(helpers)
    _say("stopped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

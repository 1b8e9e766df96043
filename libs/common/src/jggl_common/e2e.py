"""Whole-path test support: services started as real processes (``python -m <service>``)
on private ports and schemas around a JetStream server of the test's own, and bounded
waits for what a user would see. The ``cluster`` fixture of :mod:`jggl_common.testing`
gives a test one :class:`Cluster`."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import asyncpg
import httpx

from jggl_common.testing import (
    NATS_AUTH_CONFIG,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    free_port,
    start_nats_server,
)

__all__ = ["APP_KEY", "APP_SECRET", "Cluster", "drop_schemas", "eventually", "wait_ready"]

APP_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
APP_SECRET = "e2e-app-secret"
"""Meta's app secret: ingest checks the webhooks' signatures with it."""
OWN_SCHEMA = ("crm", "ai", "notifier", "scheduler")
"""The services with a Postgres schema of their own (ingest has none)."""

T = TypeVar("T")


def eventually(check: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.1) -> T:
    """The first truthy answer of ``check()``; fails after ``timeout`` seconds with the last one."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout}s (last seen: {last!r})")


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Wait until the service at ``url`` answers ``/readyz`` with 200 (fail if it exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def drop_schemas(*schemas: str) -> None:
    """Remove the tests' schemas."""

    async def drop() -> None:
        conn = await asyncpg.connect(TEST_DATABASE_URL)
        try:
            for schema in schemas:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


_REFUSALS = ("Violation", "authentication error")
"""What nats-server (2.9) writes in the log line of a refusal: ``Publish Violation`` or
``Subscription Violation`` (a permission), ``authentication error`` (a login refused: the
client is told ``Authorization Violation``, the log says only this)."""


class Cluster:
    """Services as processes around one private JetStream server; :meth:`close` stops them
    all and drops their schemas.

    With ``nats_users`` (user -> its password and the password's bcrypt hash, as
    ``jggl_sandbox.nats_credentials.new_credentials`` makes them) the server runs with the
    deployment's users and permissions (``deploy/nats/auth.conf``), holding only the
    hashes, and each service connects as its own user with its password; the settings
    bucket is then ``SETTINGS``, the one the permissions name, and :meth:`broker_refusals`
    tells what the server refused."""

    def __init__(self, jetstream_dir: Path, *, nats_users: Mapping[str, tuple[str, str]] | None = None) -> None:
        nats_auth = bool(nats_users)
        self.nats_passwords = {user: password for user, (password, _) in (nats_users or {}).items()}
        self._nats_log = jetstream_dir.parent / f"{jetstream_dir.name}-nats.log" if nats_auth else None
        self._nats, nats_port = start_nats_server(
            jetstream_dir,
            config=NATS_AUTH_CONFIG if nats_auth else None,
            password_hashes={user: bcrypt_hash for user, (_, bcrypt_hash) in (nats_users or {}).items()},
            log_file=self._nats_log,
        )
        self.tag = secrets.token_hex(4)
        self.base = {
            **os.environ,
            "APP_KEY": APP_KEY,
            "NATS_URL": f"nats://127.0.0.1:{nats_port}",
            "REDIS_URL": TEST_REDIS_URL,
            "DATABASE_URL": TEST_DATABASE_URL,
            "APP_URL": "http://localhost:8000",
            "META_APP_SECRET": APP_SECRET,
            "SETTINGS_BUCKET": "SETTINGS" if nats_auth else f"SETTINGS_{self.tag}",
            "LOG_LEVEL": "WARNING",
            # Tests call crm's API as a script does, polling as fast as they like: the API
            # clients' limit is raised out of their way (its own tests are crm's); the web
            # app's sessions keep crm's defaults, which the browser tests then show it never meets.
            "API_RATE_PER_MINUTE": "1000000",
            "API_RATE_BURST": "1000000",
        }
        self.urls: dict[str, str] = {}
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._by_name: dict[str, subprocess.Popen[bytes]] = {}

    def schema(self, service: str) -> str:
        """The test's schema of ``service``."""
        return f"{service}_e2e_{self.tag}"

    def env(self, service: str, **extra: str) -> dict[str, str]:
        """``service``'s environment: the shared one, its schema, and ``extra``."""
        env = dict(self.base)
        if service in OWN_SCHEMA:
            env["DB_SCHEMA"] = self.schema(service)
        if service in self.nats_passwords:
            env["NATS_USER"] = service
            env["NATS_PASSWORD"] = self.nats_passwords[service]
        env.update(extra)
        return env

    def broker_refusals(self) -> list[str]:
        """The lines of the server's log where it refused a client something (with
        ``nats_users``): a publish or a subscription (``Publish Violation``, ``Subscription
        Violation``), or a connection's credentials (``authentication error``)."""
        if self._nats_log is None or not self._nats_log.exists():
            return []
        return [line for line in self._nats_log.read_text().splitlines() if any(m in line for m in _REFUSALS)]

    def run(self, service: str, *command: str, **extra: str) -> None:
        """Run a command of ``service`` to completion (``migrate``, ``create-admin``...)."""
        subprocess.run(
            [sys.executable, "-m", service, *command], env=self.env(service, **extra), check=True, capture_output=True
        )

    def start(self, service: str, name: str | None = None, **extra: str) -> str:
        """Start ``service`` on a free port (under ``name``, for a second replica); its URL."""
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", service], env=self.env(service, PORT=str(port), **extra))
        url = f"http://127.0.0.1:{port}"
        self._procs.append((url, proc))
        self.urls[name or service] = url
        self._by_name[name or service] = proc
        return url

    def running(self, name: str) -> bool:
        """Whether the process started as ``name`` is still running."""
        return self._by_name[name].poll() is None

    def wait_ready(self) -> None:
        """Wait for every started service."""
        for url, proc in self._procs:
            wait_ready(url, proc)

    def close(self) -> None:
        for _, proc in self._procs:
            proc.terminate()
        for _, proc in self._procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._nats.terminate()
        self._nats.wait(10)
        drop_schemas(*(self.schema(service) for service in OWN_SCHEMA))

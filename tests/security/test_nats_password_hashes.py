"""The broker holds no password. nats-server, started with deploy/nats/auth.conf, is given
only the bcrypt hashes jggl-nats-credentials makes; each service connects with its own
password, and a wrong password, another service's or the hash itself is turned away. The
tool writes passwords only into private files, never onto its output, and `make demo` and
`make run` hand the server hashes and each service its own password."""

from __future__ import annotations

import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError

from jggl_common.bus import inbox_prefix
from jggl_common.e2e import eventually
from jggl_common.testing import NATS_AUTH_CONFIG, NATS_USERS, free_port, nats_server_binary, start_nats_server
from jggl_sandbox.nats_credentials import (
    BCRYPT_COST,
    USERS,
    NatsCredential,
    hash_variable,
    main,
    new_password,
    password_variable,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import run  # type: ignore[import-not-found]  # noqa: E402  (scripts/run.py: make run and make demo)


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines as docker compose reads them: a single-quoted value is literal."""
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.startswith("#"):
            values[name] = value[1:-1] if value[:1] == value[-1:] == "'" else value
    return values


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def connect(url: str, user: str, password: str) -> NatsClient:
    return await nats.connect(
        url,
        user=user,
        password=password,
        inbox_prefix=inbox_prefix(user),
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=2,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def broker(
    tmp_path: Path, nats_credentials: dict[str, NatsCredential]
) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """nats-server with auth.conf and the users' hashes: its URL, its process, its log."""
    hashes = {user: credential.bcrypt_hash for user, credential in nats_credentials.items()}
    log = tmp_path / "nats.log"
    proc, port = start_nats_server(tmp_path / "js", config=NATS_AUTH_CONFIG, password_hashes=hashes, log_file=log)
    try:
        yield f"nats://127.0.0.1:{port}", proc, log
    finally:
        stop(proc)


# --------------------------------------------------------------------------- the server


@pytest.mark.parametrize("user", NATS_USERS)
async def test_each_service_connects_with_its_own_password(
    broker: tuple[str, subprocess.Popen[bytes], Path], nats_credentials: dict[str, NatsCredential], user: str
) -> None:
    url, _, _ = broker
    nc = await connect(url, user, nats_credentials[user].password)
    try:
        await nc.flush(timeout=2)
        assert nc.is_connected
    finally:
        await nc.close()


@pytest.mark.parametrize("given", ["a wrong password", "another service's password", "its bcrypt hash"])
async def test_anything_but_the_password_is_turned_away(
    broker: tuple[str, subprocess.Popen[bytes], Path], nats_credentials: dict[str, NatsCredential], given: str
) -> None:
    url, _, log = broker
    password = {
        "a wrong password": new_password(),
        "another service's password": nats_credentials["ingest"].password,
        "its bcrypt hash": nats_credentials["crm"].bcrypt_hash,
    }[given]
    with pytest.raises(NatsError, match="Authorization Violation"):
        await connect(url, "crm", password)
    eventually(lambda: 'authentication error - User "crm"' in log.read_text(), "the server's log of the refusal")


def test_the_server_holds_the_hashes_and_no_password(
    broker: tuple[str, subprocess.Popen[bytes], Path], nats_credentials: dict[str, NatsCredential]
) -> None:
    _, proc, log = broker
    environment = Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
    for user, credential in nats_credentials.items():
        assert f"{hash_variable(user)}={credential.bcrypt_hash}".encode() in environment
        assert not [entry for entry in environment if credential.password.encode() in entry], user
    # nats-server warns when its configuration holds a password in plaintext.
    assert "plaintext" not in log.read_text().lower()


# --------------------------------------------------------------------------- jggl-nats-credentials


def test_the_hashes_are_bcrypt_at_the_documented_cost(nats_credentials: dict[str, NatsCredential]) -> None:
    passwords = [credential.password for credential in nats_credentials.values()]
    assert len(set(passwords)) == len(passwords)
    for credential in nats_credentials.values():
        # A letter first (nats-server would take 4e21… for a number), then 192 random bits.
        assert re.fullmatch(r"p[0-9a-f]{48}", credential.password)
        assert credential.bcrypt_hash.startswith(f"$2a${BCRYPT_COST:02d}$")
        assert bcrypt.checkpw(credential.password.encode(), credential.bcrypt_hash.encode())


def test_the_tool_writes_an_env_file_only_its_owner_reads_and_prints_no_password(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# compose\nAPP_KEY=kept\nNATS_CRM_PASSWORD=\nNATS_CRM_PASSWORD_BCRYPT=\n")
    env_file.chmod(0o644)
    done = subprocess.run(
        [sys.executable, "-m", "jggl_sandbox.nats_credentials", "--env-file", str(env_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert mode(env_file) == 0o600
    text = env_file.read_text()
    assert text.startswith("# compose\nAPP_KEY=kept\n")
    values = read_env_file(env_file)
    for user in USERS:
        assert text.count(f"\n{password_variable(user)}=") == 1
        password, hashed = values[password_variable(user)], values[hash_variable(user)]
        assert f"{hash_variable(user)}='{hashed}'" in text, "compose would read the $ in a bare hash as a variable"
        assert bcrypt.checkpw(password.encode(), hashed.encode())
        assert password not in done.stdout + done.stderr
        assert hashed not in done.stdout + done.stderr
    assert "crm, ingest, ai, notifier, scheduler" in done.stderr


def test_a_new_password_for_one_service_leaves_the_others_as_they_were(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    assert main(["--env-file", str(env_file)]) == 0
    before = read_env_file(env_file)
    assert main(["--env-file", str(env_file), "--service", "crm"]) == 0
    after = read_env_file(env_file)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {password_variable("crm"), hash_variable("crm")}
    assert bcrypt.checkpw(after[password_variable("crm")].encode(), after[hash_variable("crm")].encode())


def test_the_secret_directory_keeps_the_hashes_apart_from_each_password(tmp_path: Path) -> None:
    secrets = tmp_path / "nats-secrets"
    assert main(["--secret-dir", str(secrets)]) == 0
    assert {p.name for p in secrets.iterdir()} == {"nats", *USERS}
    assert {p.name for p in (secrets / "nats").iterdir()} == {hash_variable(user) for user in USERS}
    for directory in (secrets, *secrets.iterdir()):
        assert mode(directory) == 0o700
    for user in USERS:
        assert [p.name for p in (secrets / user).iterdir()] == ["NATS_PASSWORD"]
        password_file, hash_file = secrets / user / "NATS_PASSWORD", secrets / "nats" / hash_variable(user)
        assert mode(password_file) == mode(hash_file) == 0o600
        assert bcrypt.checkpw(password_file.read_bytes(), hash_file.read_bytes())


def test_without_a_file_to_write_to_the_tool_refuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main([])
    assert refused.value.code == 2
    assert "passwords are never printed" in capsys.readouterr().err


async def test_what_the_env_file_holds_lets_each_service_in(tmp_path: Path) -> None:
    """The file as compose reads it: the hashes for the server, a password per service."""
    env_file = tmp_path / ".env"
    assert main(["--env-file", str(env_file)]) == 0
    values = read_env_file(env_file)
    hashes = {user: values[hash_variable(user)] for user in USERS}
    proc, port = start_nats_server(tmp_path / "js", config=NATS_AUTH_CONFIG, password_hashes=hashes)
    try:
        for user in USERS:
            nc = await connect(f"nats://127.0.0.1:{port}", user, values[password_variable(user)])
            await nc.close()
    finally:
        stop(proc)


# --------------------------------------------------------------------------- make demo and make run


async def test_make_demo_gives_its_broker_the_hashes_and_each_service_its_own_password(tmp_path: Path) -> None:
    env = run._demo_env(
        {
            "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/jggl",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "AUTH_SIGNING_KEY": "not-used-here",
        }
    )
    passwords = {service: env[password_variable(service)] for service in run.SERVICES}
    server_env = run._env_for(run.NATS_SERVER, env)
    assert not set(passwords.values()) & set(server_env.values())
    for service in run.SERVICES:
        own = run._env_for(service, env)
        assert (own["NATS_USER"], own["NATS_PASSWORD"]) == (service, passwords[service])
        others = {password for user, password in passwords.items() if user != service}
        hashes = {server_env[hash_variable(user)] for user in run.SERVICES}
        assert not (others | hashes) & set(own.values()), f"{service} gets another password or a hash"
    # The demo's server as make demo starts it, on a port of the test's own.
    port = free_port()
    command = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(tmp_path / "js")]
    proc = subprocess.Popen([*command, "-c", str(NATS_AUTH_CONFIG)], env=server_env, stdout=subprocess.DEVNULL)
    try:
        eventually(lambda: listening(port) or proc.poll() is not None, "the demo's NATS server")
        for service in run.SERVICES:
            own = run._env_for(service, env)
            nc = await connect(f"nats://127.0.0.1:{port}", own["NATS_USER"], own["NATS_PASSWORD"])
            await nc.close()
    finally:
        stop(proc)


def test_make_run_with_nats_users_hands_its_broker_the_hashes_only() -> None:
    env = {password_variable(service): new_password() for service in run.SERVICES}
    env[hash_variable("crm")] = "'$2a$10$a-stale-copy-from-.env'"
    run._hash_nats_passwords(env)
    infra = run._infra_env(env, demo=False)
    for service in run.SERVICES:
        hashed = infra[hash_variable(service)]
        assert bcrypt.checkpw(env[password_variable(service)].encode(), hashed.encode())
        assert password_variable(service) not in infra
    assert not {env[password_variable(service)] for service in run.SERVICES} & set(infra.values())
    assert not set(run.NATS_HASHES) & set(run._infra_env(env, demo=True)), "the demo's broker is its own"


def test_make_run_refuses_nats_passwords_for_some_services_only() -> None:
    env = {password_variable("crm"): new_password(), password_variable("ai"): new_password()}
    with pytest.raises(SystemExit, match="NATS_INGEST_PASSWORD"):
        run._hash_nats_passwords(env)
    without = {"APP_KEY": "x"}
    run._hash_nats_passwords(without)
    assert without == {"APP_KEY": "x"}, "no NATS users: nothing to hash"

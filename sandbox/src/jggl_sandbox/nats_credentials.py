"""New NATS credentials for the broker's users (``deploy/nats/auth.conf``, one per service).

Each service gets a fresh random password and its bcrypt hash. The NATS servers are given
only the hashes (``NATS_<SERVICE>_PASSWORD_BCRYPT``), each service only its own password
(``NATS_<SERVICE>_PASSWORD``, which the deployments hand it as ``NATS_PASSWORD``)::

    jggl-nats-credentials --env-file .env                # docker compose, make run
    jggl-nats-credentials --secret-dir /secure/nats      # Kubernetes Secrets, one file per key
    jggl-nats-credentials --env-file .env --service crm  # a new password for crm only

Passwords are never printed: they go only into the files named, created with mode 0600
(an existing env file keeps its other lines and is set to 0600). The bcrypt cost is
:data:`BCRYPT_COST` (docs/security.md explains the choice).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import bcrypt

__all__ = [
    "BCRYPT_COST",
    "USERS",
    "NatsCredential",
    "bcrypt_hash",
    "hash_variable",
    "main",
    "new_credentials",
    "new_password",
    "password_variable",
    "write_env_file",
    "write_secret_dir",
]

USERS = ("crm", "ingest", "ai", "notifier", "scheduler")
"""The broker's users, one per service (``deploy/nats/auth.conf``)."""

BCRYPT_COST = 8
"""bcrypt's work factor (2^8 rounds). The passwords are 192 random bits: what keeps one
from being found from its hash is that, at any cost (bcrypt's least is 4); what the cost
does set is the CPU nats-server spends on every connection, a wrong one included, about
15 ms at 8 against 140 ms at 10 (docs/security.md)."""


class NatsCredential(NamedTuple):
    """A user's password (for the service) and its bcrypt hash (for the NATS servers)."""

    password: str
    bcrypt_hash: str


def new_password() -> str:
    """A random password of 192 bits: a letter, then hex digits. nats-server reads a value
    from its environment like a configuration value, and a password such as ``4e21…``
    would be taken for a number; letters and digits also stand in a URL unescaped."""
    return "p" + secrets.token_hex(24)


def bcrypt_hash(password: str, cost: int = BCRYPT_COST) -> str:
    """``password``'s bcrypt hash as nats-server reads it (``$2a$<cost>$…``)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost, prefix=b"2a")).decode()


def new_credentials(users: Iterable[str] = USERS) -> dict[str, NatsCredential]:
    """A fresh password and its hash for each of ``users``."""
    credentials = {}
    for user in users:
        password = new_password()
        credentials[user] = NatsCredential(password, bcrypt_hash(password))
    return credentials


def password_variable(user: str) -> str:
    """Where ``user``'s password is kept for its service: ``NATS_<USER>_PASSWORD``."""
    return f"NATS_{user.upper()}_PASSWORD"


def hash_variable(user: str) -> str:
    """Where the NATS servers read ``user``'s hash: ``NATS_<USER>_PASSWORD_BCRYPT``."""
    return f"NATS_{user.upper()}_PASSWORD_BCRYPT"


def _private_file(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``, readable and writable by its owner only. Written
    beside it first, then renamed over it: an interrupted run leaves the old file whole
    (an env file holds APP_KEY too)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_env_file(path: Path, credentials: Mapping[str, NatsCredential]) -> None:
    """Put the credentials into the env file ``path`` (docker compose's ``.env``), replacing
    those variables' lines and keeping every other one. A hash is single-quoted: compose
    would read the ``$`` in it as the start of a variable."""
    values = {}
    for user, credential in credentials.items():
        values[password_variable(user)] = credential.password
        values[hash_variable(user)] = f"'{credential.bcrypt_hash}'"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept = []
    for line in lines:
        name = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
        if name is None or name.group(1) not in values:
            kept.append(line)
    _private_file(path, "\n".join([*kept, *(f"{name}={value}" for name, value in values.items())]) + "\n")


def write_secret_dir(path: Path, credentials: Mapping[str, NatsCredential]) -> None:
    """One file per Secret key, named after it, for ``kubectl create secret generic
    --from-file=<directory>``: the hashes in ``path/nats`` (the NATS servers' Secret
    ``jggl-nats-users``), each password in ``path/<service>/NATS_PASSWORD`` (that
    service's Secret ``jggl-nats-<service>``). Directories 0700, files 0600, no newline."""
    for directory in (path, path / "nats", *(path / user for user in credentials)):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    for user, credential in credentials.items():
        _private_file(path / "nats" / hash_variable(user), credential.bcrypt_hash)
        _private_file(path / user / "NATS_PASSWORD", credential.password)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jggl-nats-credentials",
        description="New NATS passwords and their bcrypt hashes, written to files only (mode 0600).",
    )
    parser.add_argument("--env-file", type=Path, help="an env file to write them into (docker compose's .env)")
    parser.add_argument(
        "--secret-dir",
        type=Path,
        help="a directory for Kubernetes Secrets: nats/ (the hashes), <service>/ (its password)",
    )
    parser.add_argument(
        "--service",
        action="append",
        choices=USERS,
        help="only this service's password (repeatable; default: all five)",
    )
    args = parser.parse_args(argv)
    if args.env_file is None and args.secret_dir is None:
        parser.error("name where to write them: --env-file and/or --secret-dir (passwords are never printed)")
    users = tuple(dict.fromkeys(args.service or USERS))
    credentials = new_credentials(users)
    written = []
    if args.env_file is not None:
        write_env_file(args.env_file, credentials)
        written.append(str(args.env_file))
    if args.secret_dir is not None:
        write_secret_dir(args.secret_dir, credentials)
        written.append(f"{args.secret_dir}/")
    print(f"new NATS passwords and bcrypt hashes for {', '.join(users)} in {' and '.join(written)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

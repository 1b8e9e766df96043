"""``crm-admin``: operator commands that work before anyone can log in.

``crm-admin create-admin --email a@b.c --password '...' [--name 'Ops'] [--update]`` makes
an admin account (or, with ``--update``, resets an existing one to an active admin with
that password). Needs ``DATABASE_URL`` (and ``DB_SCHEMA`` when it is not ``crm``); the
schema must already be migrated.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jggl_common.db import create_engine, session_factory, session_scope
from jggl_common.settings import load_settings

from .auth.passwords import MIN_PASSWORD_LENGTH, Passwords
from .models import User
from .users.repository import UserRepository
from .users.schemas import normalize_email


class CliSettings(BaseSettings):
    """The part of crm's configuration the operator commands need."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = Field(description="PostgreSQL, e.g. postgresql://postgres@127.0.0.1:5432/jggl")
    db_schema: str = "crm"


async def create_admin(
    database_url: str, schema: str, *, email: str, password: str, name: str, update: bool = False
) -> str:
    """Create (or with ``update`` reset) an admin; returns what happened, in one sentence."""
    engine = create_engine(database_url, schema, pool_size=1)
    passwords = Passwords(concurrency=1)
    try:
        async with session_scope(session_factory(engine)) as session:
            repository = UserRepository(session)
            password_hash = await passwords.hash(password)
            if await repository.insert_if_absent(email=email, name=name, password_hash=password_hash, role="admin"):
                return f"admin {email} created"
            if not update:
                raise SystemExit(f"a user {email} already exists (add --update to make it an active admin)")
            user = await repository.get_by_email(email)
            assert isinstance(user, User)
            user.password_hash, user.role, user.is_active, user.name = password_hash, "admin", True, name
            return f"admin {email} updated"
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crm-admin`` console command."""
    parser = argparse.ArgumentParser(prog="crm-admin", description="JGGL CRM operator commands")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-admin", help="create an admin account")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True, help=f"at least {MIN_PASSWORD_LENGTH} characters")
    create.add_argument("--name", default="Admin")
    create.add_argument("--update", action="store_true", help="if the e-mail exists, make it an active admin")
    args = parser.parse_args(argv)

    try:
        email = normalize_email(args.email)
    except ValueError:
        parser.error(f"--email {args.email!r} is not an e-mail address")
    if len(args.password) < MIN_PASSWORD_LENGTH:
        parser.error(f"--password must have at least {MIN_PASSWORD_LENGTH} characters")
    if not args.name.strip():
        parser.error("--name must not be blank")
    settings = load_settings(CliSettings)
    outcome = asyncio.run(
        create_admin(
            settings.database_url,
            settings.db_schema,
            email=email,
            password=args.password,
            name=args.name.strip(),
            update=args.update,
        )
    )
    print(outcome)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

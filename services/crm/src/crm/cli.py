"""``crm-admin``: operator commands that work before anyone can log in.

``crm-admin create-admin --email a@b.c --password '...' [--name 'Ops'] [--update]`` makes
an admin account (or, with ``--update``, resets an existing one to an active admin with
that password). Needs ``DATABASE_URL`` (and ``DB_SCHEMA`` when it is not ``crm``); the
schema must already be migrated.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from jggl_common.db import create_engine, session_factory, session_scope
from jggl_common.settings import load_settings

from .auth.passwords import MIN_PASSWORD_LENGTH, Passwords, WeakPassword, check_policy
from .auth.service import revoke_tokens
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
    """Create (or with ``update`` reset) an admin; returns what happened, in one sentence.

    :class:`WeakPassword` when the password policy refuses ``password`` (nothing changed).
    Resetting an existing account ends every session it had open.
    """
    engine = create_engine(database_url, schema, pool_size=1)
    passwords = Passwords(concurrency=1)
    try:
        async with session_scope(session_factory(engine)) as session:
            repository = UserRepository(session)
            if not update and await repository.get_by_email(email) is not None:
                raise SystemExit(f"a user {email} already exists (add --update to make it an active admin)")
            check_policy(password)
            password_hash = await passwords.hash(password)
            if await repository.insert_if_absent(email=email, name=name, password_hash=password_hash, role="admin"):
                return f"admin {email} created"
            if not update:
                raise SystemExit(f"a user {email} already exists (add --update to make it an active admin)")
            user = await repository.get_by_email(email)
            assert isinstance(user, User)
            user.password_hash, user.role, user.is_active, user.name = password_hash, "admin", True, name
            revoke_tokens(user)
            return f"admin {email} updated"
    finally:
        await engine.dispose()


def openapi_document() -> str:
    """crm's OpenAPI schema as JSON text (what ``/openapi.json`` answers), made offline.

    Nothing is connected and no configuration is read: the schema depends on the code
    alone, so the web app's client can be generated on any machine.
    """
    import json

    from .api import create_app
    from .config import CrmSettings

    settings = CrmSettings(
        _env_file=None,
        app_key=base64.b64encode(bytes(32)).decode(),
        auth_signing_key=base64.b64encode(bytes(32)).decode(),
        database_url="postgresql://schema-only/crm",
        redis_url="redis://schema-only",
        nats_url="nats://schema-only",
        app_url="http://localhost:8000",
    )
    return json.dumps(create_app(settings).openapi(), indent=2, ensure_ascii=False) + "\n"


def write_openapi(path: str | None) -> str:
    """Write the schema to ``path`` (stdout when None or ``-``); returns what was done, in one sentence."""
    document = openapi_document()
    if path in (None, "-"):
        sys.stdout.write(document)
        return "OpenAPI schema written to stdout"
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(document, encoding="utf-8")
    return f"OpenAPI schema written to {target}"


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
    try:
        check_policy(args.password, "--password")
    except WeakPassword as exc:
        parser.error(str(exc))
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

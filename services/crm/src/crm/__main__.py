"""``python -m crm [serve|migrate|create-admin|openapi [path]]``.

``serve`` (the default) runs the API and the consumers; ``migrate`` brings the schema to
the latest revision; ``create-admin`` creates the admin named by ADMIN_EMAIL and
ADMIN_PASSWORD unless it exists (``crm-admin`` has the full command); ``openapi`` prints
the API's OpenAPI schema, or writes it to ``path`` (``web/openapi.json`` for the web app).
"""

from __future__ import annotations

import asyncio
import sys

from crm.auth.passwords import WeakPassword
from crm.cli import CliSettings, create_admin, write_openapi
from crm.config import CrmSettings
from crm.migrate import upgrade_sync
from jggl_common.logs import configure_logging
from jggl_common.settings import load_settings


def main(argv: list[str] | None = None) -> int:
    """Dispatch the subcommand."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    if command == "migrate":
        cli = load_settings(CliSettings)
        upgrade_sync(cli.database_url, cli.db_schema)
        print(f"crm schema {cli.db_schema!r} is at the latest revision")
        return 0
    if command == "create-admin":
        settings = load_settings(CrmSettings)
        if not settings.admin_email or not settings.admin_password:
            print("ADMIN_EMAIL and ADMIN_PASSWORD are not both set: no admin created", file=sys.stderr)
            return 0
        try:
            outcome = asyncio.run(
                create_admin(
                    settings.database_url,
                    settings.db_schema,
                    email=settings.admin_email.strip().lower(),
                    password=settings.admin_password,
                    name="Admin",
                )
            )
        except SystemExit:
            outcome = f"admin {settings.admin_email} already exists"
        except WeakPassword as exc:
            raise SystemExit(f"admin not created: ADMIN_PASSWORD is refused: {exc}") from None
        print(outcome)
        return 0
    if command == "openapi":
        configure_logging("crm", "WARNING")  # stdout carries the schema
        outcome = write_openapi(args[1] if len(args) > 1 else None)
        print(outcome, file=sys.stderr)
        return 0
    if command != "serve":
        print(f"unknown command {command!r}: use serve, migrate, create-admin or openapi", file=sys.stderr)
        return 2
    settings = load_settings(CrmSettings)
    configure_logging("crm", settings.log_level)
    import uvloop

    from crm.process import serve

    uvloop.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m notifier [serve|migrate]``: run the notifier (default), or bring its schema to
the latest revision."""

from __future__ import annotations

import sys

from jggl_common.logs import configure_logging
from jggl_common.settings import load_settings
from notifier.config import NotifierSettings
from notifier.migrate import upgrade_sync


def main(argv: list[str] | None = None) -> int:
    """Dispatch the subcommand."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    settings = load_settings(NotifierSettings)
    if command == "migrate":
        upgrade_sync(settings.database_url, settings.db_schema)
        print(f"notifier schema {settings.db_schema!r} is at the latest revision")
        return 0
    if command != "serve":
        print(f"unknown command {command!r}: use serve or migrate", file=sys.stderr)
        return 2
    configure_logging("notifier", settings.log_level)
    import uvicorn

    from notifier.process import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

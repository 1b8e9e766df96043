"""``python -m notifier [serve|migrate]``: run the notifier (default), or bring its schema to
the latest revision."""

from __future__ import annotations

import sys

from jggl_common.entrypoint import service_main
from notifier.config import NotifierSettings
from notifier.migrate import upgrade_sync


def _app(settings: NotifierSettings) -> object:
    from notifier.process import create_app  # the app's imports wait until it is served

    return create_app(settings)


def main(argv: list[str] | None = None) -> int:
    """Dispatch the subcommand."""
    return service_main("notifier", NotifierSettings, migrate=upgrade_sync, app=_app, argv=argv)


if __name__ == "__main__":
    sys.exit(main())

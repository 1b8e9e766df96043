"""``python -m ai [serve|migrate]``: run the ai service (default), or bring its schema to
the latest revision."""

from __future__ import annotations

import sys

from ai.config import AiSettings
from ai.migrate import upgrade_sync
from jggl_common.entrypoint import service_main


def _app(settings: AiSettings) -> object:
    from ai.process import create_app  # the app's imports wait until it is served

    return create_app(settings)


def main(argv: list[str] | None = None) -> int:
    """Dispatch the subcommand."""
    return service_main("ai", AiSettings, migrate=upgrade_sync, app=_app, argv=argv)


if __name__ == "__main__":
    sys.exit(main())

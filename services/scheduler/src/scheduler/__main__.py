"""``python -m scheduler [serve|migrate]``: run the scheduler (default), or bring its schema
to the latest revision."""

from __future__ import annotations

import sys

from jggl_common.entrypoint import service_main
from scheduler.config import SchedulerSettings
from scheduler.migrate import upgrade_sync


def _app(settings: SchedulerSettings) -> object:
    from scheduler.process import create_app  # the app's imports wait until it is served

    return create_app(settings)


def main(argv: list[str] | None = None) -> int:
    """Dispatch the subcommand."""
    return service_main("scheduler", SchedulerSettings, migrate=upgrade_sync, app=_app, argv=argv)


if __name__ == "__main__":
    sys.exit(main())

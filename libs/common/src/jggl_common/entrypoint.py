"""``python -m <service> [serve|migrate]``, the same for every service with a schema.

``serve`` (the default) runs the service's ASGI app with uvicorn; ``migrate`` brings its
schema to the latest revision. Configuration errors stop the process with one line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from .logs import configure_logging
from .settings import ServiceSettings, load_settings

__all__ = ["service_main"]

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def service_main(
    service: str,
    settings_class: type[SettingsT],
    *,
    migrate: Callable[[str, str], None],
    app: Callable[[SettingsT], Any],
    argv: list[str] | None = None,
) -> int:
    """Run ``service``: ``migrate(database_url, schema)`` for ``migrate``, else serve
    ``app(settings)`` on ``HOST``:``PORT`` until SIGINT/SIGTERM (in-flight work finishes)."""
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "serve"
    settings = load_settings(settings_class)
    if command == "migrate":
        migrate(settings.database_url, settings.db_schema)  # type: ignore[attr-defined]
        print(f"{service} schema {settings.db_schema!r} is at the latest revision")  # type: ignore[attr-defined]
        return 0
    if command != "serve":
        print(f"unknown command {command!r}: use serve or migrate", file=sys.stderr)
        return 2
    configure_logging(service, settings.log_level)
    import uvicorn

    uvicorn.run(
        app(settings),
        host=settings.host,
        port=settings.port,  # type: ignore[attr-defined]
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # Client addresses are resolved by jggl_common.forwarded (FORWARDED_ALLOW_IPS), never by uvicorn.
        proxy_headers=False,
    )
    return 0

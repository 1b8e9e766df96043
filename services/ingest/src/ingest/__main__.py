"""``python -m ingest``: run the ingest service."""

from __future__ import annotations

import uvicorn

from jggl_common.logs import configure_logging
from jggl_common.settings import load_settings

from .app import create_app
from .config import IngestSettings


def main() -> None:
    """Start ingest on ``HOST``:``PORT`` (default 0.0.0.0:8001)."""
    settings = load_settings(IngestSettings)
    configure_logging("ingest", settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # The client's address is resolved by ingest (FORWARDED_ALLOW_IPS, jggl_common.forwarded).
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()

"""uvicorn's server, told to end the live event streams the moment shutdown begins.

uvicorn's graceful shutdown waits for open responses to finish before the application's
lifespan ends; an event stream never finishes on its own, so without this every open
browser would hold crm's shutdown until the graceful timeout and then be cut off.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn


class Server(uvicorn.Server):
    """A ``uvicorn.Server`` that calls ``before_shutdown`` as soon as it starts shutting down."""

    def __init__(self, config: uvicorn.Config, *, before_shutdown: Callable[[], None]) -> None:
        super().__init__(config)
        self._before_shutdown = before_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """End the streams, then shut down as uvicorn does (in-flight requests finish)."""
        self._before_shutdown()
        await super().shutdown(sockets)

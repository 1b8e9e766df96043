"""Serving a fake's app on a loopback port from a background thread, for tests and benchmarks.

:class:`ServedApp` binds the port (a free one unless told), runs uvicorn in a daemon thread,
returns once the server accepts connections and stops it on :meth:`ServedApp.stop`. It
works as ``with`` and ``async with`` (the latter starts and stops off the event loop).
Each fake's server class (Graph, Gemini, Telegram) builds on it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any, ClassVar, Self

import uvicorn


class ServedApp:
    """An ASGI ``app`` served by uvicorn on ``host`` in a background thread.

    ``port`` 0 (the default) binds a free port; :attr:`port` is the one bound once started.
    """

    label: ClassVar[str] = "fake"
    """What the thread is called (``<label>-fake``, lower case) and errors say (``the <label> fake``)."""
    graceful_shutdown_seconds: ClassVar[int | None] = None
    """How long stopping waits for requests in progress; None: until they end."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._host = host
        self._want_port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The base URL clients are given: ``http://HOST:PORT``."""
        return f"http://{self._host}:{self.port}"

    def _before_start(self) -> None:
        """Called before serving begins (the fake's own reset for a new run)."""

    def _before_stop(self) -> None:
        """Called before the server is told to exit (to end what it holds open)."""

    def start(self, timeout: float = 10.0) -> Self:
        """Bind the port, start serving, and return once it accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._want_port))
        self.port = int(sock.getsockname()[1])
        self._before_start()
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=self.graceful_shutdown_seconds,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"{self.label.lower()}-fake", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the {self.label} fake did not start")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait (up to ``timeout`` seconds) for the thread to end."""
        self._before_stop()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

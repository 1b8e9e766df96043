"""Keeping the live-settings bucket equal to the ``settings`` table.

The table is the truth; the JetStream key-value bucket is how every service learns of it
without a restart. A change is published right after its commit (:meth:`SettingsSync.propagate`).
Whatever that misses (NATS down, a crash between commit and publish, a broker that lost
its storage) the reconciler repairs: at start, after every reconnection and every
``interval`` seconds it compares each known key in the bucket with the table and
republishes the difference. Nothing an admin saved is lost, and repeating is harmless.

Before its first reconciliation it seals again, with the current ``APP_KEY``, every secret
the table holds under a previous key (``APP_KEY_PREVIOUS``) or not yet bound to its key's
name (:func:`~crm.settings.service.reseal_stored`); the reconciler then republishes every
bucket entry in the same state, so after a rotation nothing depends on the previous key.

Concurrent writers cannot leave the bucket stale: every publish re-reads the table
afterwards and publishes again if it moved meanwhile, so the last publish of a key
always matches the last committed value.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

import nats
from fastapi import FastAPI, Request
from nats.aio.client import Client as NatsClient
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from jggl_common.bus import BusUnavailable, inbox_prefix
from jggl_common.live_settings import KNOWN_SETTINGS, LiveSettings, SettingSpec
from jggl_common.logs import get_logger

from . import service

__all__ = ["SettingsSync", "get_settings_sync", "settings_sync_lifespan"]

log = get_logger(__name__)

_MAX_PUBLISH_ROUNDS = 3


class SettingsSync:
    """Publishes the settings table to the live-settings bucket and keeps them equal.

    Give it a connection (``nc``) or a ``nats_url`` to connect to itself (then it also
    reconnects forever and reconciles after each reconnection). :attr:`live` is a
    watched view of the bucket that crm's own code may read settings from.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        app_key: service.Keys,
        bucket: str,
        *,
        nats_url: str | None = None,
        nc: NatsClient | None = None,
        interval: float = 30.0,
        publish_timeout: float = 3.0,
    ) -> None:
        if (nats_url is None) == (nc is None):
            raise ValueError("give either nats_url or nc")
        self._sessions = sessions
        self._app_key = app_key
        self._bucket = bucket
        self._nats_url = nats_url
        self._nc = nc
        self._interval = interval
        self._publish_timeout = publish_timeout
        self._live: LiveSettings | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._resealed = False
        self.reconciled = asyncio.Event()
        """Set once the bucket has matched the table (for start-up checks and tests)."""

    @property
    def live(self) -> LiveSettings | None:
        """The watched bucket, once connected."""
        return self._live

    async def start(self) -> None:
        """Connect and reconcile in the background; returns at once, even while NATS is down."""
        self._task = asyncio.create_task(self._run(), name="settings-sync")

    async def stop(self) -> None:
        """Stop reconciling; close the connection if this object made it."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._task, 10)
        if self._live is not None:
            await self._live.stop()
        if self._nats_url is not None and self._nc is not None:
            await _close(self._nc)

    def request_reconcile(self) -> None:
        """Reconcile as soon as possible instead of at the next interval."""
        self._wake.set()

    async def propagate(self, key: str) -> bool:
        """Publish the committed state of ``key`` now; False when it is left to the reconciler."""
        nc, live = self._nc, self._live
        if nc is None or live is None or not nc.is_connected:
            self.request_reconcile()
            return False
        try:
            await asyncio.wait_for(self._publish(live, key), self._publish_timeout)
        except Exception as exc:
            log.warning("setting left to the reconciler", key=key, error=f"{type(exc).__name__}: {exc}")
            self.request_reconcile()
            return False
        return True

    async def reconcile(self) -> int:
        """Make every known key in the bucket match the table; returns how many were republished."""
        nc, live = self._nc, self._live
        if nc is None or live is None or not nc.is_connected:
            raise BusUnavailable("not connected to NATS")
        async with self._sessions() as session:
            wanted, unreadable = await service.database_values(session, self._app_key)
        try:
            kv = await nc.jetstream().key_value(self._bucket)
        except BucketNotFoundError:
            # The broker lost its storage: start over with a fresh watched bucket.
            self._live = None
            await live.stop()
            raise BusUnavailable(f"bucket {self._bucket} is missing; it will be created again") from None
        republished = 0
        for key, spec in KNOWN_SETTINGS.items():
            if key in unreadable:
                # Publishing nothing (or a deletion) would silently swap the admin's value
                # for the environment's; leave the bucket as it is and say so.
                log.error("setting cannot be decrypted with this APP_KEY; not propagated", key=key)
                continue
            if await self._bucket_holds(kv, live, key, spec, wanted.get(key)):
                continue
            await self._publish(live, key)
            republished += 1
        return republished

    async def _bucket_holds(
        self, kv: KeyValue, live: LiveSettings, key: str, spec: SettingSpec, wanted: str | None
    ) -> bool:
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return wanted is None
        if wanted is None:
            return False
        try:
            document = json.loads(entry.value or b"")
        except ValueError:
            return False
        if not isinstance(document, dict) or document.get("secret") is not spec.secret:
            return False
        if spec.secret and live.sealed_entry(key, entry.value or b"") is not True:
            return False  # sealed with a previous APP_KEY, or not bound to its key: seal it again
        # Sealed values differ on every seal: compare secrets in clear, as the watcher read them.
        current = live.get(key) if spec.secret else document.get("value")
        return bool(current == wanted)

    async def _database_value(self, key: str) -> str | None:
        async with self._sessions() as session:
            return await service.database_value(session, self._app_key, key)

    async def _publish(self, live: LiveSettings, key: str) -> None:
        spec = KNOWN_SETTINGS[key]
        for _ in range(_MAX_PUBLISH_ROUNDS):
            value = await self._database_value(key)
            if value is None:
                await live.delete(key)
            else:
                await live.put(key, value, secret=spec.secret)
            if await self._database_value(key) == value:
                return
        self.request_reconcile()

    async def _reseal(self) -> None:
        async with self._sessions() as session:
            resealed = await service.reseal_stored(session, self._app_key)
            await session.commit()
        if resealed:
            log.info("stored secrets sealed again with the current APP_KEY", resealed=resealed)
        self._resealed = True

    async def _connect(self) -> tuple[NatsClient, LiveSettings]:
        if self._nc is None:
            assert self._nats_url is not None
            self._nc = await nats.connect(
                self._nats_url,
                name="crm-settings",
                inbox_prefix=inbox_prefix("crm"),
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                connect_timeout=2,
                error_cb=_nats_error,
                reconnected_cb=self._reconnected,
            )
        if self._live is None:
            live = LiveSettings(self._nc, self._app_key, self._bucket)
            try:
                await live.start()
            except BaseException:
                await live.stop()
                raise
            self._live = live
        return self._nc, self._live

    async def _reconnected(self) -> None:
        log.info("settings sync reconnected to NATS; reconciling")
        self.request_reconcile()

    async def _sleep(self, seconds: float) -> None:
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            self._wake.clear()
            try:
                if not self._resealed:
                    await self._reseal()
                await self._connect()
                republished = await self.reconcile()
            except Exception as exc:
                _still_cancelled()
                log.warning("live settings not reconciled yet", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                await self._sleep(delay)
                delay = min(delay * 2, self._interval)
                continue
            if republished:
                log.info("live settings reconciled", republished=republished)
            self.reconciled.set()
            delay = 0.5
            await self._sleep(self._interval)


def _still_cancelled() -> None:
    """Re-raise a cancellation that a library turned into another error.

    nats-py answers a cancellation landing during a request with its own TimeoutError;
    taken for an ordinary failure, it would keep this loop (and whoever stops it) running.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _close(nc: NatsClient) -> None:
    try:
        await nc.close()
    except asyncio.CancelledError:
        # nats-py raises CancelledError when closing a connection whose server is gone;
        # only a cancellation of this task itself must go on.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    except Exception as exc:
        log.warning("closing the settings connection failed", error=f"{type(exc).__name__}: {exc}")


async def _nats_error(exc: Exception) -> None:
    log.warning("settings sync NATS error", error=f"{type(exc).__name__}: {exc}")


def settings_sync_lifespan(
    *, nc: NatsClient | None = None, interval: float = 30.0
) -> Callable[[FastAPI], AbstractAsyncContextManager[Any]]:
    """A ``lifespan_extras`` entry for :func:`crm.api.create_app` that runs a :class:`SettingsSync`.

    It uses ``nc`` when given, else connects to ``NATS_URL`` itself, and follows the bucket
    named by ``SETTINGS_BUCKET``. Without it, settings changes are saved and audited but
    reach other services only once a reconciler runs somewhere.
    """

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        state = app.state.crm
        sync = SettingsSync(
            state.sessions,
            state.settings.app_keys,
            state.settings.settings_bucket,
            nats_url=None if nc is not None else state.settings.nats_url,
            nc=nc,
            interval=interval,
        )
        app.state.settings_sync = sync
        await sync.start()
        try:
            yield
        finally:
            await sync.stop()

    return run


def get_settings_sync(request: Request) -> SettingsSync | None:
    """The app's :class:`SettingsSync`, when one runs in this process."""
    sync: SettingsSync | None = getattr(request.app.state, "settings_sync", None)
    return sync

"""Runtime settings shared live by every service through a JetStream key-value bucket.

crm writes a setting (after an admin changed it); every service watching the bucket
sees the new value within moments, without a restart. Secret values are sealed with the
key derived from ``APP_KEY`` before they reach the broker, so NATS never holds a
plaintext secret, and bound to their key's name (a sealed value moved to another key does
not open). A deleted key means "back to the environment's default".

A reader is handed only what it uses: each service follows the keys of
:data:`SERVICE_SETTINGS` (``keys=``) and ignores every other entry without opening it. A
secret key whose entry is not sealed (say a plaintext ``meta.app_secret`` written straight
into the bucket) is refused: logged without its value, and the value in force stays.
After an ``APP_KEY`` rotation the previous keys (``APP_KEY_PREVIOUS``) still open what
was sealed before; crm re-publishes every secret sealed with the new key when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from .crypto import DecryptionError, SecretBox
from .logs import get_logger

__all__ = ["DEFAULT_BUCKET", "KNOWN_SETTINGS", "SERVICE_SETTINGS", "LiveSettings", "SettingSpec"]

DEFAULT_BUCKET = "SETTINGS"
BUCKET_WAIT_SECONDS = 60.0
"""How long a service that may not create the settings bucket waits for crm to."""
log = get_logger(__name__)

Listener = Callable[[str, str | None], None]


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """A runtime setting: whether it is secret, and the variable giving its default."""

    secret: bool
    env: str
    description: str


KNOWN_SETTINGS: dict[str, SettingSpec] = {
    "meta.app_secret": SettingSpec(True, "META_APP_SECRET", "Meta app secret (webhook signatures)"),
    "meta.verify_token": SettingSpec(True, "META_VERIFY_TOKEN", "Meta webhook verify token"),
    "meta.access_token": SettingSpec(True, "META_ACCESS_TOKEN", "default page access token"),
    "telegram.bot_token": SettingSpec(True, "TELEGRAM_BOT_TOKEN", "Telegram bot token"),
    "telegram.webhook_secret": SettingSpec(True, "TELEGRAM_WEBHOOK_SECRET", "Telegram webhook secret token"),
    "telegram.mode": SettingSpec(False, "TELEGRAM_MODE", "Telegram updates by webhook or polling"),
    "gemini.api_key": SettingSpec(True, "GEMINI_API_KEY", "Gemini API key"),
    "gemini.model": SettingSpec(False, "GEMINI_MODEL", "Gemini model name"),
    "ai.enabled": SettingSpec(False, "AI_ENABLED", "analyse conversations with AI at all"),
    "ai.debounce_seconds": SettingSpec(False, "AI_DEBOUNCE_SECONDS", "quiet seconds before a conversation is analysed"),
    "ai.requests_per_minute": SettingSpec(False, "AI_REQUESTS_PER_MINUTE", "Gemini calls per minute per ai replica"),
    "ai.concurrency": SettingSpec(False, "AI_CONCURRENCY", "Gemini calls in flight per ai replica"),
    "sla.minutes": SettingSpec(False, "SLA_MINUTES", "minutes a customer may wait before the SLA is breached"),
    "business.hours": SettingSpec(False, "BUSINESS_HOURS", "working hours, e.g. 09:00-18:00"),
    "business.timezone": SettingSpec(False, "BUSINESS_TIMEZONE", "IANA time zone of the business"),
    "meta.human_agent": SettingSpec(False, "META_HUMAN_AGENT", "allow HUMAN_AGENT replies 24 h - 7 days"),
    "notify.unassigned_leads": SettingSpec(
        False,
        "NOTIFY_UNASSIGNED_LEADS",
        "who hears of an unassigned new lead or SLA breach: everyone, admins or round_robin",
    ),
}
"""The runtime settings every service may follow, by key."""

SERVICE_SETTINGS: dict[str, frozenset[str]] = {
    "ingest": frozenset({"meta.app_secret", "meta.verify_token", "telegram.webhook_secret"}),
    "notifier": frozenset(
        {
            "telegram.bot_token",
            "telegram.webhook_secret",
            "telegram.mode",
            "business.timezone",
            "notify.unassigned_leads",
        }
    ),
    "ai": frozenset(
        {
            "gemini.api_key",
            "gemini.model",
            "ai.enabled",
            "ai.debounce_seconds",
            "ai.requests_per_minute",
            "ai.concurrency",
        }
    ),
    "scheduler": frozenset({"business.timezone"}),
    "crm": frozenset(KNOWN_SETTINGS),
}
"""The keys each service follows (``LiveSettings(..., keys=SERVICE_SETTINGS["ingest"])``); crm manages them all."""


class LiveSettings:
    """A watched view of the settings bucket: ``get`` answers from memory."""

    def __init__(
        self,
        nc: NatsClient,
        app_key: str | Sequence[str],
        bucket: str = DEFAULT_BUCKET,
        *,
        replicas: int | None = None,
        keys: Collection[str] | None = None,
    ) -> None:
        """``app_key``: ``APP_KEY``, or the key ring (``settings.app_keys``, the current key first).
        ``keys``: the settings this service follows; every other entry is ignored (None: all)."""
        self._nc = nc
        self._replicas = replicas or 1
        self._box = SecretBox(app_key, purpose="live-settings")
        self._keys = frozenset(keys) if keys is not None else None
        self._bucket = bucket
        self._values: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def _bucket_handle(self) -> KeyValue:
        if self._kv is None:
            js = self._nc.jetstream()
            try:
                self._kv = await js.key_value(self._bucket)
            except BucketNotFoundError:
                try:
                    self._kv = await js.create_key_value(
                        bucket=self._bucket, history=5, description="JGGL live settings", replicas=self._replicas
                    )
                except Exception as exc:  # refused (not crm), or no answer: wait for crm
                    self._kv = await self._declared_by_crm(js, exc)
        return self._kv

    async def _declared_by_crm(self, js: JetStreamContext, refused: Exception) -> KeyValue:
        """On a broker with per-service users only crm may create the bucket
        (deploy/nats/auth.conf): a service that starts first waits for it, up to
        ``BUCKET_WAIT_SECONDS``, then gives up with the refusal."""
        log.info("waiting for crm to create the settings bucket", bucket=self._bucket)
        deadline = time.monotonic() + BUCKET_WAIT_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(1.0)
            try:
                return await js.key_value(self._bucket)
            except BucketNotFoundError:
                continue
        raise refused

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(key, value_or_None)`` for every current and future value."""
        self._listeners.append(listener)
        for key, value in self._values.items():
            listener(key, value)

    def get(self, key: str) -> str | None:
        """The live value of ``key`` (decrypted), or None when not set."""
        return self._values.get(key)

    async def start(self, timeout: float = 5.0) -> None:
        """Load the current values and keep following changes in the background."""
        kv = await self._bucket_handle()
        watcher = await kv.watchall()
        self._task = asyncio.create_task(self._follow(watcher))
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def stop(self) -> None:
        """Stop following changes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def put(self, key: str, value: str, *, secret: bool) -> None:
        """Publish a new value; secrets are sealed before they leave the process."""
        stored = self._box.seal(value, name=key) if secret else value
        body = json.dumps({"secret": secret, "value": stored}).encode()
        await (await self._bucket_handle()).put(key, body)

    async def delete(self, key: str) -> None:
        """Forget a value: services fall back to their environment defaults."""
        await (await self._bucket_handle()).delete(key)

    async def _follow(self, watcher: KeyValue.KeyWatcher) -> None:
        async for entry in watcher:
            if entry is None:  # the initial values have all been delivered
                self._ready.set()
                continue
            self._apply(entry.key, entry.value, entry.operation)
            if entry.delta == 0:
                self._ready.set()

    def sealed_entry(self, key: str, raw: bytes) -> bool | None:
        """Whether a stored entry is sealed with the current key and bound to ``key``
        (None: it does not open at all). crm re-publishes those that are not."""
        try:
            doc = json.loads(raw)
            stored = doc["value"]
            if not doc.get("secret"):
                return True
            return not self._box.needs_reseal(stored, name=key)
        except (ValueError, KeyError, TypeError, DecryptionError):
            return None

    def _apply(self, key: str, raw: bytes | None, operation: str | None) -> None:
        if self._keys is not None and key not in self._keys:
            return  # another service's setting: never opened here
        value: str | None = None
        if operation is None and raw:
            spec = KNOWN_SETTINGS.get(key)
            try:
                doc = json.loads(raw)
                sealed = bool(doc.get("secret")) and isinstance(doc["value"], str) and SecretBox.is_sealed(doc["value"])
                if spec is not None and spec.secret and not sealed:
                    # Only crm writes the bucket, always sealed: anything else was put there around it.
                    log.error("unsealed value of a secret live setting refused", key=key)
                    return
                value = self._box.open(doc["value"], name=key) if doc.get("secret") else str(doc["value"])
            except (ValueError, KeyError, TypeError, DecryptionError) as exc:
                log.error("unreadable live setting ignored", key=key, error=f"{type(exc).__name__}")
                return
        if value is None:
            self._values.pop(key, None)
        else:
            self._values[key] = value
        log.info("live setting changed", key=key, cleared=value is None)
        for listener in self._listeners:
            listener(key, value)

"""The AI settings as they are right now: the environment's defaults, overridden live.

Admins change ``ai.enabled``, ``gemini.api_key``, ``gemini.model``, ``ai.debounce_seconds``,
``ai.requests_per_minute`` and ``ai.concurrency`` in crm; the settings bucket brings the
change here within moments, without a restart. A new key or model builds a new Gemini
client for the next call; calls in flight finish with the old one.
"""

from __future__ import annotations

from collections.abc import Callable

from ai.analysis.gemini import GeminiClient
from ai.analysis.limits import CallLimiter
from ai.analysis.service import GeminiSettings
from ai.config import AiSettings
from jggl_common.live_settings import LiveSettings
from jggl_common.logs import get_logger

__all__ = ["Knobs"]

log = get_logger(__name__)


class Knobs:
    """Reads each AI setting from the live settings, else from ``AiSettings``."""

    def __init__(self, settings: AiSettings, live: LiveSettings | None = None) -> None:
        self._settings = settings
        self._live = live
        self._client: GeminiClient | None = None
        self._client_key: tuple[str, str] | None = None
        self._stale: list[GeminiClient] = []

    def follow(self, live: LiveSettings, on_limits: Callable[[], None]) -> None:
        """Read from ``live`` from now on; ``on_limits`` runs when a limit setting changes."""
        self._live = live

        def changed(key: str, value: str | None) -> None:
            if key in ("ai.requests_per_minute", "ai.concurrency"):
                on_limits()

        live.on_change(changed)

    def _value(self, key: str) -> str | None:
        return self._live.get(key) if self._live is not None else None

    def _number(self, key: str, default: float) -> float:
        raw = self._value(key)
        try:
            return float(raw) if raw is not None else default
        except ValueError:
            log.error("unusable live setting ignored", key=key)
            return default

    def enabled(self) -> bool:
        """Whether conversations are analysed at all (``ai.enabled``)."""
        raw = self._value("ai.enabled")
        return self._settings.ai_enabled if raw is None else raw.strip().lower() == "true"

    def debounce(self) -> float:
        """Quiet seconds before a conversation is analysed (``ai.debounce_seconds``)."""
        return max(self._number("ai.debounce_seconds", self._settings.ai_debounce_seconds), 0.0)

    def parallel(self) -> int:
        """Analyses run at once: a few more than Gemini calls, so heuristic ones never queue."""
        return self.concurrency() * 2 + 2

    def concurrency(self) -> int:
        """Gemini calls in flight (``ai.concurrency``)."""
        return max(int(self._number("ai.concurrency", self._settings.ai_concurrency)), 1)

    def apply_limits(self, limiter: CallLimiter) -> None:
        """Bring ``limiter`` to the current ``ai.requests_per_minute`` and ``ai.concurrency``."""
        limiter.configure(
            per_minute=self._number("ai.requests_per_minute", self._settings.ai_requests_per_minute),
            concurrency=self.concurrency(),
        )

    def gemini(self) -> GeminiSettings:
        """The Gemini client for the current key and model (None without a key)."""
        s = self._settings
        key = (self._value("gemini.api_key") or s.gemini_api_key).strip()
        model = (self._value("gemini.model") or s.gemini_model).strip()
        if (key, model) != self._client_key:
            if self._client is not None:
                self._stale.append(self._client)
            self._client = (
                GeminiClient(
                    key,
                    model,
                    base_url=s.gemini_base_url,
                    api_version=s.gemini_api_version,
                    timeout=s.gemini_timeout_seconds,
                )
                if key
                else None
            )
            self._client_key = (key, model)
        return GeminiSettings(
            client=self._client,
            token_budget=s.ai_token_budget,
            max_attempts=s.ai_max_attempts,
            retry_max_seconds=s.ai_retry_max_seconds,
            redo_after=s.ai_breaker_cooldown_seconds,
        )

    async def aclose(self) -> None:
        """Close every Gemini client made."""
        for client in [*self._stale, *([self._client] if self._client else [])]:
            await client.aclose()
        self._stale.clear()
        self._client = None
        self._client_key = None

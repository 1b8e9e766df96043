"""Gemini through google-genai's async client: one call, its failures classified.

Retrying is the caller's decision (:mod:`ai.analysis.service`); this module only says what
happened: an answer with its token counts, or a :class:`GeminiFailure` telling whether
trying again may help and how long Gemini asked us to wait.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from google import genai
from google.genai import errors, types

from .prompt import SYSTEM_INSTRUCTION, GeminiAnalysis

__all__ = ["GeminiAnswer", "GeminiClient", "GeminiFailure", "retry_delay_of"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


@dataclass(frozen=True, slots=True)
class GeminiAnswer:
    """The model's text and what it cost."""

    text: str | None
    tokens_in: int
    tokens_out: int
    latency_ms: int


class GeminiFailure(Exception):
    """A call that did not produce an answer."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


def retry_delay_of(details: Any) -> float | None:
    """The ``RetryInfo.retryDelay`` (e.g. ``"1.5s"``) of a Google API error body, in seconds."""
    error = details.get("error", details) if isinstance(details, dict) else None
    if not isinstance(error, dict):
        return None
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


class GeminiClient:
    """``generateContent`` with the analysis schema, for one key, model and endpoint."""

    def __init__(
        self, api_key: str, model: str, *, base_url: str = "", api_version: str = "v1beta", timeout: float = 30.0
    ) -> None:
        self.model = model
        options = types.HttpOptions(api_version=api_version, timeout=int(timeout * 1000))
        if base_url:
            options.base_url = base_url
        self._client = genai.Client(api_key=api_key, http_options=options)
        self._config = types.GenerateContentConfig(
            system_instruction=SYSTEM_INSTRUCTION,
            response_mime_type="application/json",
            response_schema=GeminiAnalysis,
            temperature=0.2,
        )

    async def generate(self, prompt: str) -> GeminiAnswer:
        """One call; raises :class:`GeminiFailure` when no answer came."""
        started = time.perf_counter()
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model, contents=prompt, config=self._config
            )
        except errors.APIError as exc:
            code = int(exc.code or 0)
            if code == 429:
                raise GeminiFailure(
                    f"429 {exc.status}: {exc.message}", transient=True, retry_after=retry_delay_of(exc.details)
                ) from None
            raise GeminiFailure(f"{code} {exc.status}: {exc.message}", transient=code >= 500 or code == 408) from None
        except Exception as exc:  # timeouts and connection errors of the HTTP stack
            raise GeminiFailure(f"{type(exc).__name__}: {exc}", transient=True) from None
        usage = response.usage_metadata
        return GeminiAnswer(
            text=response.text,
            tokens_in=int((usage.prompt_token_count if usage else 0) or 0),
            tokens_out=int((usage.candidates_token_count if usage else 0) or 0),
            latency_ms=int((time.perf_counter() - started) * 1000),
        )

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self._client.aio.aclose()

"""A fake of Gemini's ``generateContent`` that speaks its wire format, for the sandbox and the tests.

The real ``google-genai`` client (3.x) talks to it unchanged: give it
``http_options=types.HttpOptions(base_url=<the fake's url>, api_version="v1beta")``.

What the client sends and what the fake answers:

* ``POST /{v1beta|v1}/models/{model}:generateContent`` with the key in ``x-goog-api-key``
  (Google also accepts ``?key=``) and a camelCase body: ``contents`` (a list of
  ``{"role": "user", "parts": [{"text"}]}``), ``systemInstruction`` (a Content too),
  ``generationConfig`` (``temperature``, ``responseMimeType``, and the schema: a pydantic
  ``response_schema`` arrives as ``responseSchema`` in Google's OpenAPI subset, ``"type":
  "OBJECT"``, with a snake_case ``property_ordering``; ``response_json_schema`` arrives as
  ``responseJsonSchema``). The client adds ``X-Server-Timeout`` (its timeout, in whole seconds).
* A missing key is Google's 403 ``PERMISSION_DENIED`` ("Method doesn't allow unregistered
  callers..."); a key outside :attr:`FakeGemini.api_keys` (when that set is given) is 400
  ``INVALID_ARGUMENT`` with an ``ErrorInfo`` detail of reason ``API_KEY_INVALID``; a model
  outside :attr:`FakeGemini.models` (when given) is 404 ``NOT_FOUND``. Errors have Google's
  shape, ``{"error": {"code", "message", "status", "details"?}}``.
* A normal answer is 200 ``{"candidates": [{"content": {"role": "model", "parts": [{"text":
  "<json>"}]}, "finishReason": "STOP", "index": 0}], "usageMetadata": {...}, "modelVersion",
  "responseId"}``, token counts being about a quarter of the characters.

The ``<json>`` follows the prompt protocol of our ai service. The user text carries the
conversation between the lines ``<transcript>`` and ``</transcript>``, one JSON object per
line (``{"n", "from": "customer"|"manager"|"meta_inbox", "at", "kind", "text"}``, ``<`` inside
strings escaped as ``\\u003c``), and optionally a ``<previous_analysis>`` ... ``</previous_analysis>``
block holding one JSON object. No transcript block, a line that is not such an object, or a
raw ``<`` in a line is a 400 ``INVALID_ARGUMENT`` whose message starts with ``fake:`` (a
protocol check of the fake's own: real Gemini would answer anything). The answer, from
:func:`expected_analysis`, is deterministic so tests recognise it:

* ``summary``: ``"<N> messages; the customer last wrote: <last customer text[:120]>"`` (an
  attachment without text reads ``[<kind>]``, no customer line ``(nothing)``), plus
  ``" (continues: <previous summary[:80]>)"`` when a previous analysis is given;
* ``intent``: the first keyword group found in all customer text (lowercased), in the order
  complaint, purchase, price, availability, delivery, support, spam, else ``other``
  (see :data:`INTENT_KEYWORDS`); ``temperature``: purchase hot, price/availability/delivery
  warm, else cold;
* ``manager_score``: null without a manager (or ``meta_inbox``) line, else 7;
  ``manager_notes``: ``speed`` (minutes from the first customer line to the first reply),
  ``politeness`` (a greeting or thanks), ``needs_discovery`` (a question asked),
  ``next_step`` (a concrete step offered), short sentences, always present;
* ``next_action``: a sentence per intent (:data:`NEXT_ACTIONS`); ``language``: ``"ru"`` when
  the customer text has Cyrillic letters, else ``"en"``.

Faults on demand, queued and consumed in order, one per generateContent request that got
past the key and body checks (:meth:`FakeGemini.fail_next`, ``POST /_fake/faults``); a
fault answers before the transcript is read:

* ``429``: ``RESOURCE_EXHAUSTED`` whose ``details`` hold a ``QuotaFailure``, a ``Help`` and,
  last, a ``RetryInfo`` whose ``retryDelay`` is a protobuf Duration string (``"1.500s"``,
  ``"2s"``). google-genai puts the whole body in ``ClientError.details``, so the delay is
  ``err.details["error"]["details"][i]["retryDelay"]`` for the ``i`` whose ``@type`` ends in
  ``RetryInfo`` (see :func:`retry_delay_of`);
* ``503``: ``UNAVAILABLE``, "The model is overloaded. Please try again later.";
* ``timeout``: hangs ``delay_seconds`` (default 30), then answers 504 ``DEADLINE_EXCEEDED``;
  the client's own timeout should fire first: google-genai's async stack is httpx2, so that
  is ``httpx2.ReadTimeout`` (neither an ``httpx`` exception nor an ``APIError``). The hang
  ends early when the client goes away, when faults are cleared or the fake reset, and
  when the server stops;
* ``invalid_json``: 200 whose text is cut-off JSON (``finishReason: "MAX_TOKENS"``), so
  ``response.parsed`` is None;
* ``empty``: 200 whose candidate has no parts (``content: {"role": "model"}``), as Gemini 2.5
  sometimes answers, so ``response.text`` and ``response.parsed`` are None;
* ``leak``: 200 with valid JSON whose ``summary`` is the request's system instruction
  verbatim (the user text when there is none): a model that obeyed a prompt injection.

Always on: a customer line containing "ignore your instructions" (any case) or
"игнорируй инструкции" makes that request a ``leak`` too, a model obeying the injection.

``count`` -1 keeps a fault until the faults are cleared (it blocks the ones queued after it).
Latency (``latency_ms``, ``POST /_fake/latency``) is added before every 200 answer; Gemini
Flash takes about a second.

Control endpoints live under ``/_fake/``: ``POST|GET|DELETE faults``, ``POST latency``,
``GET requests`` (every generateContent request: when, model, whether a key came, system
instruction, user text, generation config, and the status answered), ``POST reset``
(faults, latency and the record). :class:`GeminiFakeServer` runs the app with uvicorn on
a loopback port in a background thread, for tests; ``jggl-gemini-fake`` serves it
(``--host 127.0.0.1 --port 8092 --latency-ms 0``, ``--api-key K`` and ``--model M``
repeatable, restricting the keys and models accepted).

google-genai retries nothing unless ``HttpOptions.retry_options`` is given, so each call
is one request here.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from .serving import ServedApp

__all__ = [
    "FAULT_MODES",
    "INJECTION_PHRASES",
    "INTENT_KEYWORDS",
    "NEXT_ACTIONS",
    "FakeGemini",
    "Fault",
    "FaultMode",
    "GeminiFakeServer",
    "ProtocolError",
    "RecordedGeneration",
    "create_app",
    "expected_analysis",
    "main",
    "retry_delay_of",
]

FaultMode = Literal["429", "503", "timeout", "invalid_json", "empty", "leak"]
FAULT_MODES: tuple[FaultMode, ...] = ("429", "503", "timeout", "invalid_json", "empty", "leak")

API_VERSIONS = frozenset({"v1", "v1beta"})

INTENT_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("complaint", ("complain", "broken", "refund", "жалоб", "возврат", "сломан")),
    ("purchase", ("buy", "order", "купить", "заказ", "беру")),
    ("price", ("price", "cost", "how much", "цена", "стоимость", "сколько стоит")),
    ("availability", ("in stock", "available", "есть в наличии", "наличи")),
    ("delivery", ("deliver", "shipping", "доставк")),
    ("support", ("help", "problem", "помощ", "проблем")),
    ("spam", ("casino", "crypto", "казино")),
)
"""Substrings of the lowercased customer text, per intent; the first group found wins."""

TEMPERATURE_OF: dict[str, str] = {"purchase": "hot", "price": "warm", "availability": "warm", "delivery": "warm"}

NEXT_ACTIONS: dict[str, str] = {
    "complaint": "Apologise, find out what went wrong and offer a fix or a refund.",
    "purchase": "Confirm the order details and send the payment link.",
    "price": "Send the price with a short offer.",
    "availability": "Confirm the item is in stock and offer to reserve it.",
    "delivery": "Explain the delivery options, cost and timing.",
    "support": "Ask what exactly is wrong and help solve it.",
    "spam": "Ignore the conversation: it looks like spam.",
    "other": "Ask the customer how you can help.",
}

INJECTION_PHRASES: tuple[str, ...] = ("ignore your instructions", "игнорируй инструкции")
"""A customer line containing one of these (casefolded) makes the fake leak, like an obedient model."""

MANAGER_SCORE = 7
SENDERS = frozenset({"customer", "manager", "meta_inbox"})

_POLITE = ("hello", "hi ", "hi,", "good morning", "good afternoon", "thank", "please")
_POLITE_RU = ("здравств", "добр", "привет", "спасибо", "пожалуйста", "благодар")
_NEXT_STEP = ("order", "send", "link", "call", "deliver", "reserve")
_NEXT_STEP_RU = ("оформ", "отправ", "ссылк", "звон", "достав", "брон")
_CYRILLIC = re.compile("[\u0400-\u04ff]")


def _block(name: str) -> re.Pattern[str]:
    return re.compile(rf"^[ \t]*<{name}>[ \t]*\r?\n(.*?)^[ \t]*</{name}>[ \t]*\r?$", re.MULTILINE | re.DOTALL)


_TRANSCRIPT = _block("transcript")
_PREVIOUS = _block("previous_analysis")


class ProtocolError(ValueError):
    """The user text does not follow the ai service's prompt protocol (answered 400)."""


# ---------------------------------------------------------------------------- the answer


def parse_prompt(user_text: str) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The transcript lines and the previous analysis (or None) in a user text.

    Raises :class:`ProtocolError` when there is no transcript block, a line is not a
    message object, or a line holds a raw ``<``.
    """
    found = _TRANSCRIPT.search(user_text)
    if found is None:
        raise ProtocolError(
            "fake: the user text has no <transcript> ... </transcript> block (each tag on its own line)"
        )
    lines: list[dict[str, Any]] = []
    for number, raw in enumerate(found.group(1).splitlines(), start=1):
        if not raw.strip():
            continue
        if "<" in raw:
            raise ProtocolError(f"fake: transcript line {number} holds a raw '<' (escape it as \\u003c)")
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise ProtocolError(f"fake: transcript line {number} is not JSON: {exc}") from None
        if not isinstance(line, dict) or line.get("from") not in SENDERS:
            raise ProtocolError(
                f"fake: transcript line {number} is not an object with from customer|manager|meta_inbox"
            )
        text = line.get("text")
        if text is not None and not isinstance(text, str):
            raise ProtocolError(f"fake: transcript line {number} has a text that is neither a string nor null")
        lines.append(line)
    previous: dict[str, Any] | None = None
    block = _PREVIOUS.search(user_text)
    if block is not None:
        try:
            loaded = json.loads(block.group(1))
        except ValueError as exc:
            raise ProtocolError(f"fake: <previous_analysis> is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ProtocolError("fake: <previous_analysis> does not hold one JSON object")
        previous = loaded
    return lines, previous


def _texts(lines: list[dict[str, Any]], *senders: str) -> list[str]:
    return [line["text"] for line in lines if line["from"] in senders and isinstance(line.get("text"), str)]


def _at(line: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(line.get("at")))
    except ValueError:
        return None


def _manager_notes(lines: list[dict[str, Any]], intent: str) -> dict[str, str]:
    replies = [line for line in lines if line["from"] in {"manager", "meta_inbox"}]
    if not replies:
        return {
            "speed": "No reply from the manager yet.",
            "politeness": "Nothing to judge yet.",
            "needs_discovery": "Nothing to judge yet.",
            "next_step": "No next step proposed yet.",
        }
    first_ask = next((i for i, line in enumerate(lines) if line["from"] == "customer"), None)
    first_reply = next(
        (line for i, line in enumerate(lines) if line["from"] != "customer" and (first_ask is None or i > first_ask)),
        None,
    )
    speed = "Replied to the customer."
    if first_ask is not None and first_reply is not None:
        asked, answered = _at(lines[first_ask]), _at(first_reply)
        if asked is not None and answered is not None and (asked.tzinfo is None) == (answered.tzinfo is None):
            minutes = max(0, round((answered - asked).total_seconds() / 60))
            speed = (
                "Replied within a minute."
                if minutes == 0
                else f"First reply came {minutes} min after the customer wrote."
            )
    said = " ".join(_texts(lines, "manager", "meta_inbox")).lower()
    polite = any(word in f"{said} " for word in _POLITE + _POLITE_RU)
    return {
        "speed": speed,
        "politeness": "Polite: greeted or thanked the customer." if polite else "Neutral tone: no greeting or thanks.",
        "needs_discovery": (
            "Asked questions to clarify the need." if "?" in said else "Did not ask about the customer's needs."
        ),
        "next_step": (
            "Proposed a concrete next step."
            if any(word in said for word in _NEXT_STEP + _NEXT_STEP_RU)
            else f"No concrete next step proposed ({intent} conversation)."
        ),
    }


def expected_analysis(user_text: str) -> dict[str, Any]:
    """The analysis the fake answers for ``user_text`` (raises :class:`ProtocolError` like the fake's 400)."""
    lines, previous = parse_prompt(user_text)
    customer_text = " ".join(_texts(lines, "customer"))
    lowered = customer_text.lower()
    intent = next((name for name, words in INTENT_KEYWORDS if any(w in lowered for w in words)), "other")
    last = next((line for line in reversed(lines) if line["from"] == "customer"), None)
    if last is None:
        last_text = "(nothing)"
    elif isinstance(last.get("text"), str):
        last_text = last["text"]
    else:
        last_text = f"[{last.get('kind') or 'attachment'}]"
    summary = f"{len(lines)} messages; the customer last wrote: {last_text[:120]}"
    if previous is not None:
        summary += f" (continues: {str(previous.get('summary', ''))[:80]})"
    has_manager = any(line["from"] in {"manager", "meta_inbox"} for line in lines)
    return {
        "summary": summary,
        "intent": intent,
        "temperature": TEMPERATURE_OF.get(intent, "cold"),
        "manager_score": MANAGER_SCORE if has_manager else None,
        "manager_notes": _manager_notes(lines, intent),
        "next_action": NEXT_ACTIONS[intent],
        "language": "ru" if _CYRILLIC.search(customer_text) else "en",
    }


def injected(user_text: str) -> bool:
    """Whether a customer line of the transcript carries one of the :data:`INJECTION_PHRASES`."""
    try:
        lines, _ = parse_prompt(user_text)
    except ProtocolError:
        return False
    said = " ".join(_texts(lines, "customer")).casefold()
    return any(phrase in said for phrase in INJECTION_PHRASES)


def retry_delay_of(details: Any) -> float | None:
    """The RetryInfo delay, in seconds, of a Google error body (``ClientError.details``), or None."""
    error = details.get("error", details) if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = str(item.get("retryDelay", ""))
            try:
                return float(delay.removesuffix("s"))
            except ValueError:
                return None
    return None


def _duration(seconds: float) -> str:
    """A protobuf Duration as JSON: whole seconds bare, else 3, 6 or 9 fractional digits."""
    nanos = round(seconds * 1e9)
    whole, frac = divmod(nanos, 1_000_000_000)
    if frac == 0:
        return f"{whole}s"
    digits = f"{frac:09d}"
    for width in (3, 6):
        if digits[width:] == "0" * (9 - width):
            return f"{whole}.{digits[:width]}s"
    return f"{whole}.{digits}s"


# ---------------------------------------------------------------------------- state


@dataclass
class Fault:
    """A scripted failure, answered ``remaining`` more times (-1: until cleared)."""

    mode: FaultMode
    remaining: int = 1
    retry_delay_seconds: float = 1.0
    delay_seconds: float = 30.0


@dataclass
class RecordedGeneration:
    """A generateContent request the fake received, and how it answered."""

    at: float
    """When it arrived (Unix time)."""
    api_version: str
    model: str
    key_present: bool
    system_instruction: str | None
    user_text: str
    generation_config: dict[str, Any]
    status: int | None = None
    """The HTTP status answered; None while the answer is pending (latency, a hang)."""
    outcome: str | None = None
    """``ok``, a fault mode, ``injection`` (the always-on leak) or what refused it (``no_key``, ``bad_key``...)."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FakeGemini:
    """The fake's state: allowed keys, scripted faults, latency, and what it received. Thread-safe."""

    api_keys: set[str] | None = None
    """Keys accepted; None accepts any non-empty key."""
    models: set[str] | None = None
    """Models served; None serves any name."""
    latency_ms: float = 0.0
    """Added before every 200 answer."""
    max_records: int = 10_000
    """Older requests are forgotten beyond this many (long benchmark runs)."""
    faults: list[Fault] = field(default_factory=list)
    _records: collections.deque[RecordedGeneration] = field(default_factory=collections.deque, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _epoch: int = 0
    """Bumped by :meth:`clear_faults` and :meth:`reset`; a hang started in an older epoch ends."""
    _stopping: bool = field(default=False, repr=False)
    """Set while the server stops, so that hangs end."""

    def fail_next(
        self,
        mode: FaultMode,
        count: int = 1,
        *,
        retry_delay_seconds: float = 1.0,
        delay_seconds: float = 30.0,
    ) -> None:
        """Queue ``count`` answers of ``mode`` (-1: until :meth:`clear_faults`) after those already queued."""
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {', '.join(FAULT_MODES)}")
        if count == 0 or count < -1:
            raise ValueError("count is a positive number, or -1 for until cleared")
        with self._lock:
            self.faults.append(Fault(mode, count, retry_delay_seconds, delay_seconds))

    def clear_faults(self) -> None:
        """Forget the queued faults (and end any hang in progress)."""
        with self._lock:
            self.faults.clear()
            self._epoch += 1

    def set_latency(self, ms: float) -> None:
        """Add ``ms`` milliseconds before every 200 answer."""
        with self._lock:
            self.latency_ms = max(0.0, float(ms))

    def reset(self) -> None:
        """Forget faults, latency and the record."""
        with self._lock:
            self.faults.clear()
            self.latency_ms = 0.0
            self._records.clear()
            self._epoch += 1

    def requests(self) -> list[RecordedGeneration]:
        """Every generateContent request received, oldest first."""
        with self._lock:
            return list(self._records)

    def pending_faults(self) -> list[Fault]:
        """The faults still queued, in order."""
        with self._lock:
            return [Fault(f.mode, f.remaining, f.retry_delay_seconds, f.delay_seconds) for f in self.faults]

    # ------------------------------------------------------------------ internals

    def _record(self, record: RecordedGeneration) -> None:
        with self._lock:
            self._records.append(record)
            while len(self._records) > self.max_records:
                self._records.popleft()

    def _next_fault(self) -> Fault | None:
        with self._lock:
            while self.faults:
                fault = self.faults[0]
                if fault.remaining == -1:
                    return fault
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.pop(0)
                return fault
        return None


# ---------------------------------------------------------------------------- wire


def _google_error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> JSONResponse:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=code)


def _missing_key() -> JSONResponse:
    return _google_error(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    )


def _invalid_key() -> JSONResponse:
    message = "API key not valid. Please pass a valid API key."
    return _google_error(
        400,
        "INVALID_ARGUMENT",
        message,
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
        ],
    )


def _quota_exhausted(model: str, retry_delay: float) -> JSONResponse:
    return _google_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Resource has been exhausted (e.g. check quota).",
        [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": "10",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": _duration(retry_delay)},
        ],
    )


def _content_text(content: Any) -> str | None:
    """The text parts of a Content (or a bare string), joined by newlines."""
    if isinstance(content, str):
        return content
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return None
    texts = [p["text"] for p in content["parts"] if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return "\n".join(texts)


def _tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def _answer(
    model: str,
    prompt_chars: int,
    text: str | None,
    finish_reason: str = "STOP",
) -> JSONResponse:
    content: dict[str, Any] = {"role": "model"}
    if text is not None:
        content["parts"] = [{"text": text}]
    prompt_tokens = max(1, math.ceil(prompt_chars / 4))
    candidate_tokens = _tokens(text or "")
    usage: dict[str, Any] = {
        "promptTokenCount": prompt_tokens,
        "totalTokenCount": prompt_tokens + candidate_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
    }
    if candidate_tokens:  # proto3 JSON leaves zeros out
        usage["candidatesTokenCount"] = candidate_tokens
    body = {
        "candidates": [{"content": content, "finishReason": finish_reason, "index": 0}],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": secrets.token_urlsafe(16),
    }
    return JSONResponse(body)


def _leak(user_text: str, system_instruction: str | None) -> str:
    try:
        analysis = expected_analysis(user_text)
    except ProtocolError:
        analysis = {
            "summary": "",
            "intent": "other",
            "temperature": "cold",
            "manager_score": None,
            "manager_notes": _manager_notes([], "other"),
            "next_action": NEXT_ACTIONS["other"],
            "language": "en",
        }
    leaked = system_instruction if system_instruction is not None else user_text
    return json.dumps({**analysis, "summary": leaked}, ensure_ascii=False)


def _user_text(contents: Any) -> str:
    """The text of the user turns of a request's ``contents``, joined by newlines."""
    texts = [
        _content_text(content)
        for content in (contents if isinstance(contents, list) else [])
        if isinstance(content, dict) and content.get("role", "user") == "user"
    ]
    return "\n".join(text for text in texts if text is not None)


def _refusal(
    state: FakeGemini, api_version: str, model: str, key: str | None, has_body: bool, body: Any
) -> tuple[JSONResponse, str] | None:
    """Google's answer (and the outcome to record) when a request is refused before the model runs."""
    if api_version not in API_VERSIONS:
        return _google_error(404, "NOT_FOUND", "Method not found."), "not_found"
    if key is None:
        return _missing_key(), "no_key"
    if state.api_keys is not None and key not in state.api_keys:
        return _invalid_key(), "bad_key"
    if state.models is not None and model not in state.models:
        message = (
            f"models/{model} is not found for API version {api_version}, or is not supported for "
            "generateContent. Call ListModels to see the list of available models and their supported methods."
        )
        return _google_error(404, "NOT_FOUND", message), "unknown_model"
    problem = _body_problem(body, has_body)
    if problem is not None:
        return _google_error(400, "INVALID_ARGUMENT", problem), "bad_request"
    return None


def _body_problem(body: Any, has_body: bool) -> str | None:
    """Google's complaint about a generateContent body, or None when it has contents."""
    if body is None and has_body:
        return "Invalid JSON payload received. Unexpected token."
    contents = body.get("contents") if isinstance(body, dict) else None
    if not isinstance(contents, list) or not contents:
        return "* GenerateContentRequest.contents: contents is not specified\n"
    return None


def _fault_error(fault: Fault, model: str) -> JSONResponse:
    """The error answer of a ``429`` or ``503`` fault."""
    if fault.mode == "429":
        return _quota_exhausted(model, fault.retry_delay_seconds)
    return _google_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")


def _completion(mode: str, user_text: str, system_instruction: str | None) -> tuple[str | None, str]:
    """The candidate's text (None: no parts) and finish reason for a 200 answer of ``mode``."""
    if mode in {"leak", "injection"}:
        return _leak(user_text, system_instruction), "STOP"
    if mode == "invalid_json":
        return '{"summary": "cut off', "MAX_TOKENS"
    if mode == "empty":
        return None, "STOP"
    return json.dumps(expected_analysis(user_text), ensure_ascii=False), "STOP"


class _FaultRequest(BaseModel):
    mode: FaultMode
    count: int = Field(default=1, ge=-1)
    retry_delay_seconds: float = Field(default=1.0, ge=0)
    delay_seconds: float = Field(default=30.0, ge=0, le=3600)


class _LatencyRequest(BaseModel):
    ms: float = Field(ge=0, le=600_000)


def create_app(fake: FakeGemini | None = None) -> FastAPI:
    """The FastAPI app of the fake; its state is ``app.state.fake``."""
    state = fake or FakeGemini()
    app = FastAPI(title="Gemini API (sandbox fake)", docs_url="/_fake/docs", openapi_url="/_fake/openapi.json")
    app.state.fake = state

    @app.post("/_fake/faults")
    async def add_fault(spec: _FaultRequest) -> dict[str, Any]:
        if spec.count == 0:
            raise HTTPException(422, "count is positive, or -1 for until cleared")
        state.fail_next(
            spec.mode, spec.count, retry_delay_seconds=spec.retry_delay_seconds, delay_seconds=spec.delay_seconds
        )
        return {"faults": [asdict(f) for f in state.pending_faults()]}

    @app.get("/_fake/faults")
    async def list_faults() -> dict[str, Any]:
        return {"faults": [asdict(f) for f in state.pending_faults()]}

    @app.delete("/_fake/faults")
    async def clear_faults() -> dict[str, bool]:
        state.clear_faults()
        return {"ok": True}

    @app.post("/_fake/latency")
    async def set_latency(spec: _LatencyRequest) -> dict[str, float]:
        state.set_latency(spec.ms)
        return {"ms": state.latency_ms}

    @app.get("/_fake/requests")
    async def list_requests() -> list[dict[str, Any]]:
        return [r.as_json() for r in state.requests()]

    @app.post("/_fake/reset")
    async def reset() -> dict[str, bool]:
        state.reset()
        return {"ok": True}

    async def _wait(request: Request, seconds: float, epoch: int) -> bool:
        """Sleep ``seconds``; False when cut short (client gone, faults cleared, server stopping)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.05))
            if state._stopping or state._epoch != epoch or await request.is_disconnected():
                return False
        return True

    @app.post("/{api_version}/models/{model}:generateContent")
    async def generate_content(api_version: str, model: str, request: Request) -> JSONResponse:
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key") or None
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        body_dict: dict[str, Any] = body if isinstance(body, dict) else {}
        user_text = _user_text(body_dict.get("contents"))
        system_instruction = _content_text(body_dict.get("systemInstruction"))
        config = body_dict.get("generationConfig")
        record = RecordedGeneration(
            at=time.time(),
            api_version=api_version,
            model=model,
            key_present=key is not None,
            system_instruction=system_instruction,
            user_text=user_text,
            generation_config=config if isinstance(config, dict) else {},
        )
        state._record(record)

        def finish(response: JSONResponse, outcome: str) -> JSONResponse:
            record.status, record.outcome = response.status_code, outcome
            return response

        refusal = _refusal(state, api_version, model, key, bool(raw), body)
        if refusal is not None:
            return finish(*refusal)
        epoch = state._epoch
        fault = state._next_fault()
        if fault is not None and fault.mode in {"429", "503"}:
            return finish(_fault_error(fault, model), fault.mode)
        if fault is not None and fault.mode == "timeout":
            await _wait(request, fault.delay_seconds, epoch)
            message = "Deadline expired before operation could complete."
            return finish(_google_error(504, "DEADLINE_EXCEEDED", message), "timeout")
        mode = fault.mode if fault is not None else "injection" if injected(user_text) else "ok"
        try:
            text, finish_reason = _completion(mode, user_text, system_instruction)
        except ProtocolError as exc:
            return finish(_google_error(400, "INVALID_ARGUMENT", str(exc)), "bad_request")
        if state.latency_ms > 0:
            await _wait(request, state.latency_ms / 1000, epoch)
        prompt_chars = len(user_text) + len(system_instruction or "")
        return finish(_answer(model, prompt_chars, text, finish_reason), mode)

    return app


# ---------------------------------------------------------------------------- serving


class GeminiFakeServer(ServedApp):
    """The fake served by uvicorn on a loopback port, in a background thread.

    ``with GeminiFakeServer() as server: genai.Client(api_key="k",
    http_options=types.HttpOptions(base_url=server.url, api_version="v1beta"))``; ``server.fake``
    (or the shortcuts here) scripts faults and reads the record while it runs. ``async with``
    works too, starting and stopping off the event loop. Stopping ends any hang in progress.
    """

    label = "Gemini"
    graceful_shutdown_seconds = 2

    def __init__(
        self,
        fake: FakeGemini | None = None,
        host: str = "127.0.0.1",
        *,
        latency_ms: float = 0.0,
        api_keys: set[str] | None = None,
    ) -> None:
        self.fake = fake or FakeGemini(api_keys=api_keys, latency_ms=latency_ms)
        super().__init__(create_app(self.fake), host)

    def fail_next(
        self, mode: FaultMode, count: int = 1, *, retry_delay_seconds: float = 1.0, delay_seconds: float = 30.0
    ) -> None:
        """:meth:`FakeGemini.fail_next`."""
        self.fake.fail_next(mode, count, retry_delay_seconds=retry_delay_seconds, delay_seconds=delay_seconds)

    def clear_faults(self) -> None:
        """:meth:`FakeGemini.clear_faults`."""
        self.fake.clear_faults()

    def set_latency(self, ms: float) -> None:
        """:meth:`FakeGemini.set_latency`."""
        self.fake.set_latency(ms)

    def reset(self) -> None:
        """:meth:`FakeGemini.reset`."""
        self.fake.reset()

    def requests(self) -> list[RecordedGeneration]:
        """:meth:`FakeGemini.requests`."""
        return self.fake.requests()

    def _before_start(self) -> None:
        self.fake._stopping = False

    def _before_stop(self) -> None:
        self.fake._stopping = True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jggl-gemini-fake``: serve the fake until interrupted."""
    parser = argparse.ArgumentParser(
        prog="jggl-gemini-fake",
        description="Serve a fake of Gemini's generateContent (google-genai talks to it with base_url=http://HOST:PORT).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added before every 200 answer")
    parser.add_argument(
        "--api-key", action="append", default=None, help="a key the fake accepts (repeatable); default: any key"
    )
    parser.add_argument("--model", action="append", default=None, help="a model it serves (repeatable); default: any")
    args = parser.parse_args(argv)
    if args.latency_ms < 0:
        parser.error("--latency-ms must be >= 0")
    fake = FakeGemini(
        api_keys=set(args.api_key) if args.api_key else None,
        models=set(args.model) if args.model else None,
        latency_ms=args.latency_ms,
    )
    uvicorn.run(create_app(fake), host=args.host, port=args.port, log_level="info", timeout_graceful_shutdown=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

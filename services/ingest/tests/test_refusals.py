"""Refusing requests leaks nothing: each refusal is an exception of its own, whose
traceback is that request's alone. An exception object raised again and again keeps
every earlier raise's frames on its ``__traceback__`` (and with them each refused body),
so a steady stream of bad requests would grow ingest's memory without bound."""

from __future__ import annotations

import json
from collections import defaultdict
from types import TracebackType
from typing import Any

import pytest

from ingest import meta_webhook, telegram
from ingest.receiving import Refused, refusal
from jggl_common.bus import BusUnavailable

ROUNDS = 25
LIMIT = 1024


def _depth(traceback: TracebackType | None) -> int:
    depth = 0
    while traceback is not None:
        depth, traceback = depth + 1, traceback.tb_next
    return depth


async def test_every_refused_request_raises_a_fresh_exception_with_a_traceback_of_its_own(
    start_ingest, meta, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What reached the answer of each refused request: the exception, and how deep its
    # traceback was right then (a reused exception would already be deeper the next time).
    seen: dict[tuple[str, str], list[tuple[Refused | BusUnavailable, int]]] = defaultdict(list)

    def recording(source: str, error: Refused | BusUnavailable) -> tuple[int, bytes]:
        reason = error.reason if isinstance(error, Refused) else "unavailable"
        seen[source, reason].append((error, _depth(error.__traceback__)))
        return refusal(source, error)

    monkeypatch.setattr(meta_webhook, "refusal", recording)
    monkeypatch.setattr(telegram, "refusal", recording)
    _, payload = meta.messages(1)
    body = meta.encode(payload)
    oversized = meta.encode({**payload, "padding": "x" * LIMIT})
    not_json = b'{"object": "page", "entry": ['
    update = json.dumps({"update_id": 1, "message": {"text": "hi"}}).encode()
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/webhooks/meta", {"content": body, "headers": {"X-Hub-Signature-256": meta.sign(body, secret="wrong")}}),
        ("/webhooks/meta", {"content": body}),
        ("/webhooks/meta", {"content": oversized, "headers": {"X-Hub-Signature-256": meta.sign(oversized)}}),
        ("/webhooks/meta", {"content": not_json, "headers": {"X-Hub-Signature-256": meta.sign(not_json)}}),
        ("/webhooks/telegram", {"content": update, "headers": {"X-Telegram-Bot-Api-Secret-Token": "wrong"}}),
        ("/webhooks/telegram", {"content": b"[", "headers": {"X-Telegram-Bot-Api-Secret-Token": meta.telegram_secret}}),
        (
            "/webhooks/telegram",
            {
                "content": b" " * (LIMIT + 1) + update,
                "headers": {"X-Telegram-Bot-Api-Secret-Token": meta.telegram_secret},
            },
        ),
    ]

    async with start_ingest(max_body_bytes=LIMIT) as ingest:
        statuses = defaultdict(set)
        for _ in range(ROUNDS):
            for path, request in requests:
                response = await ingest.client.post(path, **request)
                statuses[path].add(response.status_code)

    assert statuses == {"/webhooks/meta": {400, 401, 403, 413}, "/webhooks/telegram": {400, 403, 413}}
    assert set(seen) == {
        ("meta", "signature_invalid"),
        ("meta", "signature_missing"),
        ("meta", "too_large"),
        ("meta", "malformed"),
        ("telegram", "secret_token"),
        ("telegram", "malformed"),
        ("telegram", "too_large"),
    }
    for kind, refused in seen.items():
        assert len(refused) == ROUNDS, kind
        errors = [error for error, _ in refused]
        assert len({id(error) for error in errors}) == ROUNDS, f"{kind}: one exception object raised again"
        depths = {depth for _, depth in refused}
        assert len(depths) == 1, f"{kind}: the traceback grew from request to request: {sorted(depths)}"
        assert depths.pop() <= 8, kind

"""Telegram's webhook: ``POST /webhooks/telegram``, each Bot API update stored as one
``ingest.telegram.update`` event (the notifier handles it).

Telegram proves the request is its own with ``X-Telegram-Bot-Api-Secret-Token`` (the
secret given to ``setWebhook``); an update id seen before is deduplicated like a Meta item.
"""

from __future__ import annotations

import hmac
import json

from fastapi import APIRouter, Request
from fastapi.responses import Response

from jggl_common.bus import BusUnavailable
from jggl_common.contracts import TelegramUpdateData, TelegramUpdateReceived, stable_event_id
from jggl_common.logs import CORRELATION_HEADER, correlation_from_headers, set_correlation_id

from .receiving import Refused, admit, read_body, refusal
from .runtime import RECEIVED, Ingest, Outgoing

__all__ = ["PATH", "telegram_router"]

PATH = "/webhooks/telegram"
PRODUCER = "ingest"
_OK = b'{"status":"ok"}'
_SECRET_MISMATCH = (403, "secret_token", "X-Telegram-Bot-Api-Secret-Token does not match")
_MALFORMED = (400, "malformed", "not a Telegram update")


def _json(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def telegram_router(ingest: Ingest) -> APIRouter:
    """The router of ``POST /webhooks/telegram``."""
    router = APIRouter()
    received = RECEIVED.labels("telegram")

    @router.post(PATH, summary="Telegram Bot API webhook")
    async def telegram_webhook(request: Request) -> Response:
        received.inc()
        correlation = correlation_from_headers(request.headers)
        set_correlation_id(correlation)
        try:
            admit(ingest, request.scope)
            token = request.headers.get("x-telegram-bot-api-secret-token", "")
            if not ingest.telegram_secret or not hmac.compare_digest(
                token.encode("utf-8", "replace"), ingest.telegram_secret.encode()
            ):
                raise Refused(*_SECRET_MISMATCH)
            body = await read_body(
                request.receive, request.headers.get("content-length"), ingest.settings.max_body_bytes
            )
            if body is None:  # the client went away; nobody reads this answer
                return Response(status_code=400)
            try:
                update = json.loads(body)
                data = TelegramUpdateData(update_id=update["update_id"], update=update)
                event = TelegramUpdateReceived(
                    id=stable_event_id(f"telegram:{data.update_id}"),
                    producer=PRODUCER,
                    correlation_id=correlation,
                    data=data,
                )
                payload = event.model_dump_json().encode()
            except (ValueError, TypeError, KeyError, RecursionError):
                raise Refused(*_MALFORMED) from None
            headers = {"Nats-Msg-Id": event.id, CORRELATION_HEADER: correlation}
            await ingest.publish(
                [Outgoing(event.subject, f"telegram:{data.update_id}", payload, headers, "telegram", "update")]
            )
        except (Refused, BusUnavailable) as error:
            return _json(*refusal("telegram", error))
        return _json(200, _OK)

    return router

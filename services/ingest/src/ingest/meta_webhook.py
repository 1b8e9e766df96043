"""Meta's webhook (Messenger and Instagram): ``POST /webhooks/meta`` and the subscription
handshake ``GET /webhooks/meta``.

The POST is ingest's one hot path, so it is a plain ASGI endpoint: under load the
framework's routing, request and response objects would cost more than the work itself
(verify, split, publish). It answers exactly like a FastAPI route would, and
:data:`OPENAPI` documents it in the schema. The handshake is an ordinary route.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic_core import to_json

from jggl_common.bus import BusUnavailable
from jggl_common.contracts import MetaItemData, MetaItemReceived, meta_subject, stable_event_id, utcnow
from jggl_common.logs import CORRELATION_HEADER, new_correlation_id, set_correlation_id

from .meta import split_webhook, verify_signature
from .receiving import Receive, Refused, admit, read_body, refusal
from .runtime import RECEIVED, REJECTED, Ingest, Outgoing

__all__ = ["OPENAPI", "PATH", "MetaWebhook", "handshake_router"]

PATH = "/webhooks/meta"
PRODUCER = "ingest"
OPENAPI: dict[str, Any] = {
    "summary": "Meta webhook (Messenger and Instagram)",
    "description": (
        "A signed Messenger or Instagram webhook. 200 means every item is stored in JetStream; "
        "401/403 a missing or wrong X-Hub-Signature-256; 400 a body that is not a Meta webhook; "
        "413 a body over the limit; 429 too many requests from one address; 503 the broker is "
        "unreachable (Meta retries)."
    ),
    "parameters": [
        {"name": "X-Hub-Signature-256", "in": "header", "required": True, "schema": {"type": "string"}},
        {"name": CORRELATION_HEADER, "in": "header", "required": False, "schema": {"type": "string"}},
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
    "responses": {
        "200": {"description": "Stored", "content": {"application/json": {"schema": {"type": "object"}}}},
        **{code: {"description": "Refused"} for code in ("400", "401", "403", "413", "429", "503")},
    },
}
"""The OpenAPI operation of the POST, which FastAPI does not route itself."""

RECEIVED_META = RECEIVED.labels("meta")
REJECTED_UNSUPPORTED = REJECTED.labels("meta", "unsupported_object")
_CORRELATION = CORRELATION_HEADER.lower().encode()
_JSON = (b"content-type", b"application/json")
_ACCEPTED = {n: json.dumps({"status": "ok", "events": n}).encode() for n in range(1, 11)}
_EVENT_TYPE: str = MetaItemReceived.model_fields["type"].default
_IGNORED = b'{"status":"ignored","events":0}'
# Refusals are raised as new exceptions each time (one raised again would grow its traceback).
_SIGNATURE_MISSING = (401, "signature_missing", "X-Hub-Signature-256 is missing")
_SIGNATURE_INVALID = (403, "signature_invalid", "X-Hub-Signature-256 does not match the body")


def _envelope(data: MetaItemData, correlation: str) -> Outgoing:
    """The ``ingest.meta.item`` event (:class:`MetaItemReceived`) of one item, serialised.

    ``data`` was validated by split_webhook; the envelope's fields are written straight
    into JSON in the contract's order, which serialises to the same bytes as the model
    would without building it.
    """
    event_id = stable_event_id(data.dedupe_key)
    payload = to_json(
        {
            "id": event_id,
            "type": _EVENT_TYPE,
            "version": 1,
            "occurred_at": utcnow(),
            "producer": PRODUCER,
            "correlation_id": correlation,
            "data": data,
        }
    )
    return Outgoing(
        subject=meta_subject(data.object, data.kind),
        key=data.dedupe_key,
        payload=payload,
        headers={"Nats-Msg-Id": event_id, CORRELATION_HEADER: correlation},
        object=data.object,
        kind=data.kind,
        timestamp_ms=data.timestamp,
    )


class MetaWebhook:
    """``POST /webhooks/meta`` as a plain ASGI endpoint."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest
        self.limit = ingest.settings.max_body_bytes

    async def __call__(self, scope: Any, receive: Receive, send: Any) -> None:
        RECEIVED_META.inc()
        # The headers it needs, the first of each when repeated (ASGI names are lowercase).
        length = signature = correlation = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value if length is None else length
            elif name == b"x-hub-signature-256":
                signature = value if signature is None else signature
            elif name == _CORRELATION:
                correlation = value if correlation is None else correlation
        cid = correlation.decode("latin-1")[:128] if correlation else new_correlation_id()
        set_correlation_id(cid)
        status = 200
        answer: bytes | None
        try:
            answer = await self._handle(scope, receive, length, signature, cid)
        except (Refused, BusUnavailable) as error:
            status, answer = refusal("meta", error)
        if answer is None:  # the client went away before sending all of its body
            return
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [_JSON, (b"content-length", str(len(answer)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    async def _handle(
        self, scope: Any, receive: Receive, length: bytes | None, signature: bytes | None, correlation: str
    ) -> bytes | None:
        ingest = self.ingest
        admit(ingest, scope)
        body = await read_body(receive, length, self.limit)
        if body is None:
            return None
        if not signature:
            raise Refused(*_SIGNATURE_MISSING)
        if not verify_signature(body, signature.decode("latin-1"), ingest.app_secret):
            raise Refused(*_SIGNATURE_INVALID)
        try:
            object_, items = split_webhook(json.loads(body))
            # Serialising fails for items nested deeper than JSON encoding allows.
            envelopes = [_envelope(item, correlation) for item in items]
        except (ValueError, RecursionError) as exc:
            raise Refused(400, "malformed", f"not a Meta webhook: {exc}") from None
        if object_ is None:
            REJECTED_UNSUPPORTED.inc()
            return _IGNORED
        await ingest.publish(envelopes)
        return _ACCEPTED.get(len(items)) or json.dumps({"status": "ok", "events": len(items)}).encode()


def handshake_router(ingest: Ingest) -> APIRouter:
    """``GET /webhooks/meta``: Meta's subscription handshake (``hub.challenge`` back for the right token)."""
    router = APIRouter()

    @router.get(PATH, response_class=PlainTextResponse, summary="Meta subscription handshake")
    async def meta_handshake(request: Request) -> Response:
        params = request.query_params
        token = params.get("hub.verify_token", "")
        if (
            params.get("hub.mode") == "subscribe"
            and ingest.verify_token
            and hmac.compare_digest(token.encode(), ingest.verify_token.encode())
        ):
            return PlainTextResponse(params.get("hub.challenge", ""))
        REJECTED.labels("meta", "verify_token").inc()
        return PlainTextResponse("verification failed", status_code=403)

    return router

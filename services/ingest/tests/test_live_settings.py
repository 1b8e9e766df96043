"""An admin's new app secret reaches ingest live, through the settings bucket."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets

import httpx
import nats

from ingest.app import create_app
from ingest.config import IngestSettings
from jggl_common.live_settings import LiveSettings
from jggl_common.testing import TEST_NATS_URL, TEST_REDIS_URL


def _signed(body: bytes, secret: str) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


async def test_new_app_secret_is_used_within_seconds_and_the_broker_holds_no_plaintext() -> None:
    app_key = base64.b64encode(os.urandom(32)).decode()
    bucket = "SETTINGS_T" + secrets.token_hex(4).upper()
    settings = IngestSettings(
        app_key=app_key,
        nats_url=TEST_NATS_URL,
        redis_url=TEST_REDIS_URL,
        app_url="http://x",
        meta_app_secret="old-secret",
        settings_bucket=bucket,
        rate_limit_per_minute=10_000,
    )
    app = create_app(settings)
    page = "9" + secrets.token_hex(6)
    body = json.dumps(
        {
            "object": "page",
            "entry": [
                {
                    "id": page,
                    "time": 1,
                    "messaging": [
                        {
                            "sender": {"id": "1"},
                            "recipient": {"id": page},
                            "timestamp": 1,
                            "message": {"mid": "m_" + secrets.token_hex(8), "text": "hi"},
                        }
                    ],
                }
            ],
        },
        separators=(",", ":"),
    ).encode()
    nc = await nats.connect(TEST_NATS_URL)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client,
        ):
            for _ in range(100):
                if app.state.ingest.live is not None:
                    break
                await asyncio.sleep(0.05)
            assert (
                await client.post("/webhooks/meta", content=body, headers=_signed(body, "old-secret"))
            ).status_code == 200

            await LiveSettings(nc, app_key, bucket).put("meta.app_secret", "new-secret-value", secret=True)
            status = None
            for _ in range(100):
                status = (
                    await client.post("/webhooks/meta", content=body, headers=_signed(body, "new-secret-value"))
                ).status_code
                if status == 200:
                    break
                await asyncio.sleep(0.05)
            assert status == 200
            assert (
                await client.post("/webhooks/meta", content=body, headers=_signed(body, "old-secret"))
            ).status_code == 403

            raw = await (await nc.jetstream().key_value(bucket)).get("meta.app_secret")
            assert raw.value is not None
            assert b"new-secret-value" not in raw.value
    finally:
        await nc.jetstream().delete_key_value(bucket)
        await nc.close()

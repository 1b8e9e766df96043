"""Meta's subscription handshake: GET /webhooks/meta."""

from __future__ import annotations

import pytest


async def test_right_token_echoes_the_challenge_as_plain_text(ingest, meta) -> None:
    response = await ingest.client.get(
        "/webhooks/meta",
        params={"hub.mode": "subscribe", "hub.verify_token": meta.verify_token, "hub.challenge": "1158201444"},
    )

    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    ("mode", "token"),
    [
        pytest.param("subscribe", "not-the-token", id="wrong-token"),
        pytest.param("subscribe", "{right}x", id="longer-token"),
        pytest.param("subscribe", None, id="no-token"),
        pytest.param("unsubscribe", "{right}", id="wrong-mode"),
        pytest.param(None, "{right}", id="no-mode"),
    ],
)
async def test_anything_but_subscribe_with_the_right_token_is_refused(ingest, meta, mode, token) -> None:
    params = {"hub.challenge": "1158201444"}
    if mode is not None:
        params["hub.mode"] = mode
    if token is not None:
        params["hub.verify_token"] = token.format(right=meta.verify_token)

    response = await ingest.client.get("/webhooks/meta", params=params)

    assert response.status_code == 403
    assert "1158201444" not in response.text


async def test_without_a_configured_token_no_handshake_succeeds(start_ingest) -> None:
    async with start_ingest(meta_verify_token="") as ingest:
        response = await ingest.client.get(
            "/webhooks/meta", params={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "42"}
        )

    assert response.status_code == 403


async def test_the_openapi_schema_documents_both_methods_of_the_meta_webhook(ingest) -> None:
    schema = (await ingest.client.get("/openapi.json")).json()

    operations = schema["paths"]["/webhooks/meta"]
    assert set(operations) == {"get", "post"}
    assert "X-Hub-Signature-256" in {p["name"] for p in operations["post"]["parameters"]}
    assert {"200", "401", "403", "503"} <= set(operations["post"]["responses"])


async def test_other_methods_on_the_meta_webhook_are_not_allowed(ingest) -> None:
    response = await ingest.client.put("/webhooks/meta", content=b"{}")

    assert response.status_code == 405

"""X-Hub-Signature-256: checked over the raw body before anything is parsed or stored."""

from __future__ import annotations

import json


async def test_a_correctly_signed_webhook_is_accepted_and_stored(ingest, meta, stream) -> None:
    page, payload = meta.messages(1)

    response = await ingest.post_meta(payload)

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "events": 1}
    (stored,) = await stream.meta_events(page)
    assert stored.data["item"] == payload["entry"][0]["messaging"][0]


async def test_a_body_changed_by_one_byte_is_refused_and_nothing_is_stored(ingest, meta, stream) -> None:
    page, payload = meta.messages(1)
    body = meta.encode(payload)
    signature = meta.sign(body)
    position = body.index(b"msg 0")
    tampered = body[:position] + b"M" + body[position + 1 :]

    response = await ingest.post_meta(tampered, signature=signature)

    assert response.status_code == 403
    assert "detail" in response.json()
    assert await stream.meta_events(page) == []


async def test_a_missing_signature_is_refused_and_nothing_is_stored(ingest, meta, stream) -> None:
    page, payload = meta.messages(1)

    response = await ingest.post_meta(payload, signature=None)

    assert response.status_code == 401
    assert "X-Hub-Signature-256" in response.json()["detail"]
    assert await stream.meta_events(page) == []


async def test_signatures_of_other_secrets_or_shapes_are_refused(ingest, meta, stream) -> None:
    page, payload = meta.messages(1)
    body = meta.encode(payload)
    digest = meta.sign(body).removeprefix("sha256=")
    wrong = [
        meta.sign(body, secret="another-app-secret"),
        "sha1=" + digest,
        digest,
        "sha256=" + digest[:-1],
        "sha256=" + digest + "0",
        "sha256=",
        "sha256=" + "z" * 64,
    ]

    statuses = [(await ingest.post_meta(body, signature=s)).status_code for s in wrong]

    assert statuses == [403] * len(wrong)
    assert await stream.meta_events(page) == []


async def test_an_uppercase_hex_digest_is_accepted(ingest, meta, stream) -> None:
    page, payload = meta.messages(1)
    body = meta.encode(payload)
    signature = "sha256=" + meta.sign(body).removeprefix("sha256=").upper()

    response = await ingest.post_meta(body, signature=signature)

    assert response.status_code == 200
    assert len(await stream.meta_events(page)) == 1


async def test_escaped_non_ascii_is_verified_over_the_bytes_sent_and_stored_as_the_text(ingest, meta, stream) -> None:
    text = "Здравствуйте! Сколько стоит доставка? 😊🙏 ĉu"
    page = meta.new_id()
    payload = meta.webhook("page", [meta.entry(page, [meta.text(page, text)])])
    body = meta.encode(payload)
    assert b"\\u0417" in body  # Meta's escaping: the body on the wire is pure ASCII
    assert b"\\ud83d\\ude0a" in body

    response = await ingest.post_meta(body)

    assert response.status_code == 200
    (stored,) = await stream.meta_events(page)
    assert stored.data["item"]["message"]["text"] == text


async def test_a_signature_over_the_unescaped_form_of_the_same_json_is_refused(ingest, meta, stream) -> None:
    page = meta.new_id()
    payload = meta.webhook("page", [meta.entry(page, [meta.text(page, "Привіт")])])
    escaped = meta.encode(payload)
    raw_utf8 = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    response = await ingest.post_meta(escaped, signature=meta.sign(raw_utf8))

    assert response.status_code == 403
    assert await stream.meta_events(page) == []


async def test_without_a_configured_app_secret_every_webhook_is_refused(start_ingest, meta, stream) -> None:
    page, payload = meta.messages(1)
    body = meta.encode(payload)

    async with start_ingest(meta_app_secret="") as ingest:
        response = await ingest.post_meta(body, signature=meta.sign(body, secret=""))

    assert response.status_code == 403
    assert await stream.meta_events(page) == []

"""Bodies that are signed correctly but are not something ingest can store."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"object":"page","entry":[', id="truncated"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(b"[1,2,3]", id="json-array"),
        pytest.param(b'"page"', id="json-string"),
        pytest.param(b'{"entry":[]}', id="no-object"),
        pytest.param(b'{"object":"page","entry":{}}', id="entry-not-a-list"),
        pytest.param(b'{"object":"page","entry":[{"time":1}]}', id="entry-without-id"),
        pytest.param(b'{"object":"page","entry":[{"id":"1","messaging":{}}]}', id="messaging-not-a-list"),
        pytest.param(b'{"object":"page","entry":[{"id":"1","messaging":[7]}]}', id="item-not-an-object"),
        pytest.param(b'{"object":"page","entry":[{"id":true,"messaging":[]}]}', id="boolean-entry-id"),
    ],
)
async def test_signed_but_malformed_bodies_get_400(ingest, body) -> None:
    response = await ingest.post_meta(body)

    assert response.status_code == 400
    assert response.json()["detail"]


async def test_a_deeply_nested_item_gets_400_not_500(ingest, meta, stream) -> None:
    page = meta.new_id()
    nested = b"[" * 800 + b"1" + b"]" * 800  # within what the JSON parser accepts
    body = meta.encode(meta.webhook("page", [meta.entry(page, [meta.text(page, "hello")])]))
    body = body.replace(b'"text":"hello"', b'"text":"hello","nested":' + nested)

    response = await ingest.post_meta(body)

    assert response.status_code == 400
    assert await stream.meta_events(page) == []


async def test_an_oversized_body_gets_413_and_nothing_is_stored(start_ingest, meta, stream) -> None:
    page, payload = meta.messages(40)
    body = meta.encode(payload)
    assert len(body) > 2048

    async with start_ingest(max_body_bytes=2048) as ingest:
        declared = await ingest.post_meta(body)

        async def chunks():
            for start in range(0, len(body), 256):
                yield body[start : start + 256]

        streamed = await ingest.client.post(
            "/webhooks/meta",
            content=chunks(),
            headers={"Content-Type": "application/json", "X-Hub-Signature-256": meta.sign(body)},
        )
        small_page, small = meta.messages(1)
        fits = await ingest.post_meta(small)

    assert declared.status_code == 413
    assert streamed.status_code == 413  # no Content-Length: counted while reading
    assert "detail" in streamed.json()
    assert fits.status_code == 200
    assert await stream.meta_events(page) == []
    assert len(await stream.meta_events(small_page)) == 1


@pytest.mark.parametrize("length", ["abc", "-1", "\u00b2", "1" * 5000])
async def test_a_nonsense_content_length_is_refused_without_a_500(ingest, meta, length) -> None:
    _, payload = meta.messages(1)
    body = meta.encode(payload)

    response = await ingest.client.post(
        "/webhooks/meta",
        content=body,
        headers={"Content-Length": length.encode("latin-1"), "X-Hub-Signature-256": meta.sign(body)},
    )

    assert response.status_code in (400, 413)


async def test_an_unsupported_object_is_acknowledged_and_ignored(ingest, meta, stream) -> None:
    account = meta.new_id()
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": account, "changes": [{"field": "messages", "value": {"messages": [{"id": "wamid.1"}]}}]}],
    }

    response = await ingest.post_meta(payload)

    assert response.status_code == 200
    assert response.json()["events"] == 0
    assert [m for m in await stream.read() if m.data.get("entry_id") == account] == []


async def test_an_empty_entry_list_is_acknowledged_with_no_events(ingest) -> None:
    response = await ingest.post_meta({"object": "page", "entry": []})

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "events": 0}

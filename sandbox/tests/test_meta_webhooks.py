"""The customer simulator: Meta webhook bodies, signatures, and delivery to a live endpoint."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request, Response

from jggl_sandbox import meta_webhooks as mw
from jggl_sandbox.simulator import Progress, customer_webhooks, main, percentile, send_webhooks

SECRET = "sandbox-app-secret"


def classify(item: dict[str, Any]) -> str:
    """An independent reading of a messaging item, by the rules ingest follows."""
    if item.get("field") == "messaging_postbacks":
        return "postback"
    if "message" in item:
        return "echo" if item["message"].get("is_echo") else "message"
    for key, kind in (
        ("postback", "postback"),
        ("reaction", "reaction"),
        ("read", "read"),
        ("delivery", "delivery"),
        ("message_edit", "edit"),
        ("referral", "referral"),
    ):
        if key in item:
            return kind
    return "other"


# ------------------------------------------------------------------ signatures


def test_sign_matches_an_independent_hmac() -> None:
    body = b'{"object":"page","entry":[]}'
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert mw.sign(body, SECRET) == "sha256=" + expected
    # RFC-style known vector, so the helper is not only checked against itself.
    assert mw.sign(b"The quick brown fox jumps over the lazy dog", "key") == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


def test_signed_webhook_carries_meta_headers() -> None:
    payload = mw.webhook("messenger", mw.DEFAULT_PAGE_ID, [mw.every_kind("messenger")[0][1]], 1)
    hook = mw.signed(payload, SECRET)
    assert hook.body == mw.encode(payload)
    assert hook.headers == {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), hook.body, hashlib.sha256).hexdigest(),
    }


def test_non_ascii_is_escaped_and_separators_are_compact() -> None:
    body = mw.encode({"text": "Привет, ещё? 😊", "n": [1, 2]})
    assert (
        body
        == b'{"text":"\\u041f\\u0440\\u0438\\u0432\\u0435\\u0442, \\u0435\\u0449\\u0451? \\ud83d\\ude0a","n":[1,2]}'
    )
    assert body.isascii()
    assert json.loads(body) == {"text": "Привет, ещё? 😊", "n": [1, 2]}


def test_customer_text_reaches_the_body_escaped() -> None:
    customer = mw.Customer.new("instagram", random.Random(3))
    item = customer.text("Доброго дня 👋")
    body = mw.signed(mw.webhook("instagram", customer.page_id, [item], 1), SECRET).body
    assert b"\\u0414\\u043e\\u0431\\u0440\\u043e\\u0433\\u043e" in body
    assert b"\\ud83d\\udc4b" in body
    assert "Доброго".encode() not in body


# ----------------------------------------------------------------------- kinds


@pytest.mark.parametrize("platform", mw.PLATFORMS)
def test_every_kind_covers_what_the_platform_sends(platform: mw.Platform) -> None:
    kinds = {kind for kind, _ in mw.every_kind(platform)}
    expected = set(mw.KINDS) if platform == "messenger" else set(mw.KINDS) - {"delivery", "edit"}
    assert kinds == expected == mw.kinds_for(platform)
    assert len(mw.KINDS) == 9


@pytest.mark.parametrize("platform", mw.PLATFORMS)
def test_expected_kinds_agree_with_the_items(platform: mw.Platform) -> None:
    for name, kind, item in mw.every_variant(platform):
        assert classify(item) == kind, name


@pytest.mark.parametrize("platform", mw.PLATFORMS)
def test_items_have_meta_envelope_fields(platform: mw.Platform) -> None:
    page = mw.DEFAULT_PAGE_ID if platform == "messenger" else mw.DEFAULT_INSTAGRAM_ACCOUNT_ID
    for name, kind, item in mw.every_variant(platform):
        inner = item["value"] if "field" in item else item
        assert set(inner) >= {"sender", "recipient", "timestamp"}, name
        ids = {inner["sender"]["id"], inner["recipient"]["id"]}
        assert page in ids, name
        assert len(ids) == 2, name
        if kind == "echo":
            assert inner["sender"]["id"] == page
        else:
            assert inner["recipient"]["id"] == page
        payload_keys = set(inner) - {"sender", "recipient", "timestamp"}
        assert len(payload_keys) == 1, (name, payload_keys)
        ts = int(inner["timestamp"])
        assert 1_700_000_000_000 < ts < 2_000_000_000_000, name  # milliseconds


@pytest.mark.parametrize("platform", mw.PLATFORMS)
def test_message_ids_look_like_the_platforms_and_are_unique(platform: mw.Platform) -> None:
    fresh: list[str] = []
    for name, kind, item in mw.every_variant(platform):
        if kind in {"message", "echo"} and not name.startswith("delete"):
            fresh.append(item["message"]["mid"])
    assert len(fresh) == len(set(fresh))
    for mid in fresh:
        if platform == "messenger":
            assert mid.startswith("m_")
            assert len(mid) > 40
        else:
            assert mid.startswith("aWdf")
            assert base64.b64decode(mid + "=" * (-len(mid) % 4)).startswith(b"ig_message_item:")


def test_instagram_sends_no_delivery_or_edit() -> None:
    customer = mw.Customer.new("instagram", random.Random(1))
    for variant in ("delivery", "delivery_no_mids", "edit", "location", "optin", "get_started"):
        with pytest.raises(ValueError, match="does not send"):
            customer.make(variant)
    with pytest.raises(ValueError, match="unknown"):
        customer.make("sticker")


def test_postback_shapes() -> None:
    variants = {name: item for name, _, item in mw.every_variant("messenger")}
    usual = variants["postback"]
    assert set(usual["postback"]) == {"title", "payload", "mid"}
    assert isinstance(usual["timestamp"], int)
    assert variants["get_started"]["postback"]["payload"] == "GET_STARTED"
    assert variants["get_started"]["postback"]["title"] == "Get Started"
    assert variants["get_started_referral"]["postback"]["referral"]["source"] == "SHORTLINK"

    wrapped = variants["postback_value"]
    assert set(wrapped) == {"field", "value"}
    assert wrapped["field"] == "messaging_postbacks"
    value = wrapped["value"]
    assert set(value) == {"sender", "recipient", "timestamp", "postback"}
    assert isinstance(value["timestamp"], str)
    assert value["timestamp"].isdigit()
    assert set(value["postback"]) == {"mid", "title", "payload"}


def test_instagram_specific_shapes() -> None:
    v = {name: item for name, _, item in mw.every_variant("instagram")}
    echo_mid = v["echo"]["message"]["mid"]
    assert v["read"]["read"] == {"mid": v["read"]["read"]["mid"]}
    assert v["read"]["read"]["mid"] in {echo_mid} | {i["message"]["mid"] for i in v.values() if "message" in i}
    assert v["delete"]["message"]["is_deleted"] is True
    assert v["delete_string"]["message"]["is_deleted"] == "true"
    assert v["delete"]["message"]["mid"] != v["delete_string"]["message"]["mid"]
    assert set(v["story_reply"]["message"]["reply_to"]["story"]) == {"url", "id"}
    assert v["story_mention"]["message"]["attachments"][0]["type"] == "story_mention"
    assert v["unsupported"]["message"]["is_unsupported"] is True
    assert v["unreact"]["reaction"] == {"mid": v["unreact"]["reaction"]["mid"], "action": "unreact"}
    assert {"reaction", "emoji", "mid"} <= set(v["reaction"]["reaction"])


def test_messenger_specific_shapes() -> None:
    v = {name: item for name, _, item in mw.every_variant("messenger")}
    assert set(v["read"]["read"]) == {"watermark"}
    assert set(v["delivery"]["delivery"]) == {"mids", "watermark"}
    assert set(v["delivery_no_mids"]["delivery"]) == {"watermark"}
    edit = v["edit"]["message_edit"]
    assert set(edit) == {"mid", "text", "num_edit"}
    assert edit["num_edit"] == 1
    echo = v["echo"]["message"]
    assert echo["is_echo"] is True
    assert isinstance(echo["app_id"], int)
    assert v["referral_ad"]["referral"]["source"] == "ADS"
    assert "ad_id" in v["referral_ad"]["referral"]
    assert v["referral_link"]["referral"]["type"] == "OPEN_THREAD"
    assert v["quick_reply"]["message"]["quick_reply"]["payload"]
    assert "mid" in v["reply"]["message"]["reply_to"]


def test_a_long_conversation_keeps_a_bounded_memory() -> None:
    customer = mw.Customer.new("instagram", random.Random(9))
    for _ in range(300):
        customer.text()
        customer.echo()
        customer.delete()
    assert len(customer.own_mids) <= 64
    assert len(customer.page_mids) <= 64
    assert len(customer.deleted) <= 64
    assert customer.read()["read"]["mid"] == customer.page_mids[-1]


def test_standby_items_go_under_standby() -> None:
    items = [item for _, item in mw.every_kind("instagram")]
    body = mw.webhook("instagram", mw.DEFAULT_INSTAGRAM_ACCOUNT_ID, items, 123, standby=True)
    assert body["object"] == "instagram"
    assert body["entry"] == [{"id": mw.DEFAULT_INSTAGRAM_ACCOUNT_ID, "time": 123, "standby": items}]
    assert mw.entry("1", [], 5) == {"id": "1", "time": 5, "messaging": []}
    assert mw.envelope("page", []) == {"object": "page", "entry": []}


# ------------------------------------------------------------ reproducibility


@pytest.mark.parametrize("platform", mw.PLATFORMS)
def test_same_seed_same_bytes(platform: mw.Platform) -> None:
    def body(seed: int) -> bytes:
        items = [item for _, item in mw.every_kind(platform, seed=seed)]
        return mw.encode(mw.webhook(platform, "1", items, 1))

    assert body(7) == body(7)
    assert body(7) != body(8)


def test_customer_traffic_is_reproducible_without_a_clock() -> None:
    def run(seed: int) -> list[bytes]:
        stream = customer_webhooks(SECRET, customers=5, seed=seed, batch=3, standby_share=0.2)
        return [hook.body for hook in itertools.islice(stream, 40)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_customer_traffic_checks_its_arguments_at_once() -> None:
    with pytest.raises(ValueError, match="unknown"):
        customer_webhooks(SECRET, variants=["text", "nope"])
    with pytest.raises(ValueError, match="instagram"):
        customer_webhooks(SECRET, platforms=("instagram",), variants=["delivery"])


def test_customer_traffic_shapes() -> None:
    stream = customer_webhooks(SECRET, customers=4, seed=3, batch=5, variants=["text", "read", "delivery"])
    for hook in itertools.islice(stream, 30):
        payload = json.loads(hook.body)
        assert payload["object"] in {"page", "instagram"}
        assert len(payload["entry"]) == 5
        assert hook.headers["X-Hub-Signature-256"] == mw.sign(hook.body, SECRET)
        for e in payload["entry"]:
            (item,) = e["messaging"]
            kind = classify(item)
            assert kind in {"message", "read"} or (payload["object"] == "page" and kind == "delivery")


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0


# --------------------------------------------------------------- live endpoint


@dataclass
class FakeIngest:
    """A minimal webhook endpoint: checks the signature over the raw body, like ingest."""

    url: str = ""
    received: list[bytes] = field(default_factory=list)
    items: int = 0


def _app(state: FakeIngest) -> FastAPI:
    app = FastAPI()

    @app.post("/webhooks/meta")
    async def meta(request: Request) -> Response:
        body = await request.body()
        state.received.append(body)
        expected = mw.sign(body, SECRET)
        if not hmac.compare_digest(request.headers.get("x-hub-signature-256", ""), expected):
            return Response(status_code=403)
        payload = json.loads(body)
        state.items += sum(len(e.get("messaging", [])) + len(e.get("standby", [])) for e in payload["entry"])
        return Response("EVENT_RECEIVED", media_type="text/plain")

    return app


@pytest.fixture
def fake_ingest() -> Iterator[FakeIngest]:
    state = FakeIngest()
    server = uvicorn.Server(uvicorn.Config(_app(state), host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "test server stopped"
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}/webhooks/meta"
    try:
        yield state
    finally:
        server.should_exit = True
        thread.join(10)


async def test_send_webhooks_counts_statuses(fake_ingest: FakeIngest) -> None:
    good = list(itertools.islice(customer_webhooks(SECRET, seed=1), 30))
    bad = list(itertools.islice(customer_webhooks("wrong-secret", seed=2), 10))
    reports: list[Progress] = []
    stats = await send_webhooks(
        fake_ingest.url, good + bad, rate=None, concurrency=8, on_progress=reports.append, progress_interval=0.05
    )
    assert stats.sent == 40 == len(fake_ingest.received)
    assert stats.ok == 30
    assert stats.failed == 10
    assert dict(stats.by_status) == {"200": 30, "403": 10}
    assert len(stats.latencies_ms) == 40
    assert fake_ingest.items == 30
    assert reports
    assert reports[-1].done
    assert reports[-1].sent == 40
    assert stats.percentile(50) is not None
    assert stats.rate > 0


async def test_send_webhooks_respects_the_count(fake_ingest: FakeIngest) -> None:
    endless = customer_webhooks(SECRET, seed=4, batch=2)
    stats = await send_webhooks(fake_ingest.url, itertools.islice(endless, 25), rate=None, concurrency=4)
    assert stats.sent == stats.ok == 25
    assert len(fake_ingest.received) == 25
    assert fake_ingest.items == 50


async def test_send_webhooks_paces_and_stops_after_the_duration(fake_ingest: FakeIngest) -> None:
    endless = customer_webhooks(SECRET, seed=5)
    started = time.monotonic()
    stats = await send_webhooks(fake_ingest.url, endless, rate=40, concurrency=4, duration=0.5)
    assert time.monotonic() - started < 5
    # 40/s for half a second, plus at most one catch-up burst.
    assert 10 <= stats.sent <= 25
    assert stats.ok == stats.sent == len(fake_ingest.received)


async def test_send_webhooks_is_paced(fake_ingest: FakeIngest) -> None:
    hooks = list(itertools.islice(customer_webhooks(SECRET, seed=6), 21))
    stats = await send_webhooks(fake_ingest.url, hooks, rate=50, concurrency=8)
    assert stats.ok == 21
    assert stats.elapsed_s >= 0.38  # 20 intervals of 20 ms


async def test_send_webhooks_stops_on_request(fake_ingest: FakeIngest) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stop.set)
    stats = await send_webhooks(fake_ingest.url, customer_webhooks(SECRET), rate=20, concurrency=2, stop=stop)
    assert 1 <= stats.sent <= 12
    assert stats.failed == 0


async def test_send_webhooks_counts_transport_errors() -> None:
    hooks = list(itertools.islice(customer_webhooks(SECRET), 3))
    async with httpx.AsyncClient(transport=httpx.MockTransport(_refuse)) as client:
        stats = await send_webhooks("http://ingest.invalid/webhooks/meta", hooks, None, 2, client=client)
    assert stats.failed == 3
    assert stats.ok == 0
    assert dict(stats.by_status) == {"ConnectError": 3}
    assert stats.latencies_ms == []


def _refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_cli_sends_count_and_prints_a_summary(
    fake_ingest: FakeIngest, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("META_APP_SECRET", SECRET)
    code = main(["--url", fake_ingest.url, "--count", "30", "--rate", "200", "--seed", "1", "--customers", "5"])
    out = capsys.readouterr().out
    assert code == 0
    assert len(fake_ingest.received) == 30
    assert "status 200" in out
    assert "30 webhooks (30 items)" in out
    assert "p50" in out
    assert "p90" in out
    assert "p99" in out


def test_cli_reports_failures_in_its_exit_status(fake_ingest: FakeIngest, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--url", fake_ingest.url, "--app-secret", "wrong", "--count", "5", "--rate", "0", "--quiet"])
    assert code == 1
    assert "status 403" in capsys.readouterr().out


def test_cli_needs_a_secret_and_an_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("META_APP_SECRET", raising=False)
    with pytest.raises(SystemExit) as exc:
        main(["--count", "1"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--app-secret", "s", "--count", "0"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--app-secret", "s", "--platform", "instagram", "--kinds", "delivery,edit"])
    assert exc.value.code == 2


def test_cli_lists_variants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list-kinds"]) == 0
    out = capsys.readouterr().out
    for name in mw.VARIANTS:
        assert name in out

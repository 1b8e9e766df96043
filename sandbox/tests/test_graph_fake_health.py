"""The Graph fake's health endpoints: debug_token with the app token, subscribed_apps with
the page token, and the switches tests use to break them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from jggl_sandbox.graph_fake import GraphFakeServer
from jggl_sandbox.graph_health import DEFAULT_FIELDS

PAGE = "104857600123456"
SECRET = "fake-app-secret"


@pytest.fixture
def server() -> Iterator[GraphFakeServer]:
    with GraphFakeServer() as running:
        running.fake.app_secret = SECRET
        yield running


def _debug(server: GraphFakeServer, token: str, app_token: str | None = None) -> httpx.Response:
    app_token = app_token or f"{server.fake.app_id}|{SECRET}"
    return httpx.get(
        f"{server.url}/v25.0/debug_token", params={"input_token": token, "access_token": app_token}, timeout=5
    )


def test_debug_token_says_valid_and_when_it_expires(server: GraphFakeServer) -> None:
    never = _debug(server, "page-token").json()["data"]
    assert never["is_valid"] is True
    assert never["expires_at"] == 0
    assert never["app_id"] == str(server.fake.app_id)
    assert "pages_messaging" in never["scopes"]

    soon = int(time.time()) + 3 * 86400
    server.fake.health.expire("page-token", soon)
    assert _debug(server, "page-token").json()["data"]["expires_at"] == soon


def test_an_invalid_or_expired_token_is_reported_in_data_not_as_an_http_error(server: GraphFakeServer) -> None:
    server.fake.health.invalidate("changed-password")
    answer = _debug(server, "changed-password")
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert data["is_valid"] is False
    assert data["error"]["code"] == 190
    assert data["error"]["subcode"] == 460

    server.fake.health.expire("old", time.time() - 60)
    assert _debug(server, "old").json()["data"]["error"]["subcode"] == 463

    server.fake.tokens = {"the-only-one"}
    assert _debug(server, "unknown").json()["data"]["is_valid"] is False
    assert _debug(server, "the-only-one").json()["data"]["is_valid"] is True


def test_debug_token_checks_the_app_token(server: GraphFakeServer) -> None:
    wrong = _debug(server, "page-token", app_token=f"{server.fake.app_id}|not-the-secret")
    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == 190
    missing = httpx.get(f"{server.url}/v25.0/debug_token", params={"input_token": "x"}, timeout=5)
    assert missing.json()["error"]["code"] == 104
    # The app token in the Authorization header works as well (crm's client sends it so).
    header = httpx.get(
        f"{server.url}/v25.0/debug_token",
        params={"input_token": "page-token"},
        headers={"Authorization": f"Bearer {server.fake.app_id}|{SECRET}"},
        timeout=5,
    )
    assert header.json()["data"]["is_valid"] is True
    recorded = server.fake.calls("/debug_token")
    assert all("input_token" not in call.query for call in recorded)


def test_subscribed_apps_lists_our_app_until_the_page_is_unsubscribed(server: GraphFakeServer) -> None:
    def apps() -> httpx.Response:
        return httpx.get(
            f"{server.url}/v25.0/{PAGE}/subscribed_apps", headers={"Authorization": "Bearer page-token"}, timeout=5
        )

    [ours] = apps().json()["data"]
    assert ours["id"] == str(server.fake.app_id)
    assert ours["subscribed_fields"] == list(DEFAULT_FIELDS)

    server.fake.health.unsubscribe(PAGE)
    assert apps().json() == {"data": []}

    server.fake.health.subscribe(PAGE, ("messages",), app_id="999")
    assert [(app["id"], app["subscribed_fields"]) for app in apps().json()["data"]] == [("999", ["messages"])]

    server.fake.health.invalidate("page-token")
    assert apps().json()["error"]["code"] == 190

    httpx.post(f"{server.url}/_fake/reset", timeout=5)
    assert apps().json()["data"][0]["id"] == str(server.fake.app_id)


def test_scripted_throttling_applies_to_both(server: GraphFakeServer) -> None:
    server.fake.fail_next(1, code=4, match="debug_token")
    server.fake.fail_next(1, code=80006, match="subscribed_apps")
    throttled = _debug(server, "page-token")
    assert throttled.json()["error"]["code"] == 4
    assert "X-App-Usage" in throttled.headers
    apps = httpx.get(
        f"{server.url}/v25.0/{PAGE}/subscribed_apps", headers={"Authorization": "Bearer page-token"}, timeout=5
    )
    assert apps.json()["error"]["code"] == 80006


def test_the_switches_over_http(server: GraphFakeServer) -> None:
    httpx.post(
        f"{server.url}/_fake/health",
        json={"unsubscribe": [PAGE], "invalidate": ["bad"], "expire": {"soon": 1}},
        timeout=5,
    ).raise_for_status()
    assert server.fake.health.apps(PAGE, "1") == []
    assert _debug(server, "bad").json()["data"]["is_valid"] is False
    assert _debug(server, "soon").json()["data"]["error"]["subcode"] == 463

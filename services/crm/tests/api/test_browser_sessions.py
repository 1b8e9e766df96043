"""Browser sessions: the token in an httpOnly cookie, CSRF on every unsafe cookie request,
bearer clients untouched, sign-out clearing both cookies."""

from __future__ import annotations

from datetime import timedelta
from http.cookies import SimpleCookie

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.api import create_app
from crm.models import User
from jggl_common.contracts import utcnow
from jggl_common.db import session_scope

from ..support import random_address
from .conftest import Api, api_settings
from .factories import PASSWORD, create_deal, create_user, unique_email


def _set_cookies(response: httpx.Response) -> dict[str, SimpleCookie]:
    """Each Set-Cookie header of ``response``, parsed, by cookie name."""
    parsed: dict[str, SimpleCookie] = {}
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            parsed[name] = cookie
    return parsed


async def _sign_in(api: Api, user: User) -> httpx.Response:
    response = await api.client.post("/api/auth/session", json={"email": user.email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return response


async def test_signing_in_sets_an_httponly_lax_session_cookie_and_a_readable_csrf_cookie(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
    response = await _sign_in(api, user)

    body = response.json()
    assert body["user"]["id"] == user.id
    assert body["user"]["email"] == user.email
    assert "password_hash" not in body["user"]
    cookies = _set_cookies(response)
    session_cookie = cookies["jggl_session"]["jggl_session"]
    csrf_cookie = cookies["jggl_csrf"]["jggl_csrf"]
    assert session_cookie["httponly"] is True
    assert session_cookie["samesite"].lower() == "lax"
    assert session_cookie["path"] == "/"
    assert session_cookie["max-age"] == str(api.state.settings.token_ttl_seconds)
    assert not session_cookie["secure"]  # APP_URL is http in these tests
    assert not csrf_cookie["httponly"]
    assert csrf_cookie["samesite"].lower() == "lax"
    assert csrf_cookie.value == body["csrf_token"]
    # The cookie holds a token that works like a bearer one.
    assert api.state.tokens.verify(session_cookie.value).user_id == user.id


async def test_me_answers_through_the_cookie_alone(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
    await _sign_in(api, user)
    me = await api.client.get("/api/me")
    assert me.status_code == 200
    assert me.json()["id"] == user.id


async def test_an_unsafe_cookie_request_needs_the_csrf_header(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
        colleague = await create_user(session)
        first = await create_deal(session)
        second = await create_deal(session)
    csrf = (await _sign_in(api, user)).json()["csrf_token"]

    missing = await api.client.post(f"/api/deals/{first.id}/take")
    assert missing.status_code == 403
    assert "X-CSRF-Token" in missing.json()["detail"]
    wrong = await api.client.post(f"/api/deals/{first.id}/take", headers={"X-CSRF-Token": csrf[:-2] + "xx"})
    assert wrong.status_code == 403
    assert "does not match" in wrong.json()["detail"]
    # Refused requests changed nothing: the deal is still free to take.
    taken = await api.client.post(f"/api/deals/{first.id}/take", headers={"X-CSRF-Token": csrf})
    assert taken.status_code == 200, taken.text
    assert taken.json()["assignee_id"] == user.id
    # Another user's CSRF token does not fit this session.
    other_client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api.app, client=(random_address(), 40000)), base_url="http://crm.test"
    )
    async with other_client:
        other = await other_client.post("/api/auth/session", json={"email": colleague.email, "password": PASSWORD})
    assert other.status_code == 200
    foreign = await api.client.post(
        f"/api/deals/{second.id}/take", headers={"X-CSRF-Token": other.json()["csrf_token"]}
    )
    assert foreign.status_code == 403


async def test_safe_cookie_requests_need_no_csrf_header(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
    await _sign_in(api, user)
    assert (await api.client.get("/api/deals")).status_code == 200


async def test_bearer_requests_are_unaffected(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
        deal = await create_deal(session)
    login = await api.client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert login.status_code == 200
    assert "set-cookie" not in login.headers
    token = login.json()["access_token"]
    taken = await api.client.post(f"/api/deals/{deal.id}/take", headers={"Authorization": f"Bearer {token}"})
    assert taken.status_code == 200, taken.text


async def test_a_bearer_header_wins_over_a_session_cookie(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        browser_user = await create_user(session)
        api_user = await create_user(session)
        deal = await create_deal(session)
    await _sign_in(api, browser_user)
    taken = await api.client.post(f"/api/deals/{deal.id}/take", headers=api.headers(api_user))
    assert taken.status_code == 200, taken.text
    assert taken.json()["assignee_id"] == api_user.id


async def test_signing_out_clears_both_cookies_and_ends_the_browser_session(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
    await _sign_in(api, user)
    out = await api.client.delete("/api/auth/session")
    assert out.status_code == 204
    assert out.content == b""
    cleared = _set_cookies(out)
    for name in ("jggl_session", "jggl_csrf"):
        assert cleared[name][name].value == ""
        assert cleared[name][name]["max-age"] == "0"
        assert cleared[name][name]["path"] == "/"
    assert "jggl_session" not in api.client.cookies
    assert (await api.client.get("/api/me")).status_code == 401
    # Signing out without a session is fine too (a page whose session expired).
    assert (await api.client.delete("/api/auth/session")).status_code == 204


async def test_an_expired_or_forged_cookie_is_a_401(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
    assert user.id is not None
    expired = api.state.tokens.issue(
        user.id, user.password_hash, now=utcnow() - timedelta(seconds=api.state.tokens.ttl_seconds + 60)
    )
    for value in (expired, "not-a-token", expired[:-4] + "AAAA"):
        api.client.cookies.set("jggl_session", value)
        response = await api.client.get("/api/me")
        assert response.status_code == 401, value
        assert response.json() == {"detail": "Invalid or expired token"}
        # Unsafe requests too: a dead session is a 401, not a CSRF 403.
        assert (await api.client.post("/api/deals/1/take", headers={"X-CSRF-Token": "x"})).status_code == 401


async def test_a_wrong_password_sets_no_cookie_and_shares_the_login_limit(api: Api) -> None:
    async with session_scope(api.sessions) as session:
        user = await create_user(session)
    limit = api.state.settings.login_attempts_per_15_min
    for attempt in range(limit):
        path = "/api/auth/session" if attempt % 2 else "/api/auth/login"
        refused = await api.client.post(path, json={"email": user.email, "password": "wrong guess"})
        assert refused.status_code == 401
        assert "set-cookie" not in refused.headers
    throttled = await api.client.post("/api/auth/session", json={"email": user.email, "password": PASSWORD})
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) > 0
    assert "set-cookie" not in throttled.headers


@pytest.mark.parametrize(
    ("app_url", "override", "secure"),
    [("https://crm.example", None, True), ("http://crm.example", True, True), ("https://crm.example", False, False)],
)
async def test_the_secure_flag_follows_app_url_unless_configured(
    crm_engine: AsyncEngine, pg_schema: str, app_url: str, override: bool | None, secure: bool
) -> None:
    settings = api_settings(pg_schema, app_url=app_url, session_cookie_secure=override)
    app = create_app(settings, engine=crm_engine)
    async with app.router.lifespan_context(app):
        async with session_scope(app.state.crm.sessions) as session:
            user = await create_user(session, email=unique_email())
        transport = httpx.ASGITransport(app=app, client=(random_address(), 40000))
        async with httpx.AsyncClient(transport=transport, base_url="https://crm.test") as client:
            response = await client.post("/api/auth/session", json={"email": user.email, "password": PASSWORD})
            out = await client.delete("/api/auth/session")
    assert response.status_code == 200
    for name, cookie in _set_cookies(response).items():
        assert bool(cookie[name]["secure"]) is secure, name
    for name, cookie in _set_cookies(out).items():
        assert bool(cookie[name]["secure"]) is secure, name

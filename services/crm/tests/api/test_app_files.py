"""The web app's files at / beside the API: hashed assets cached for a year, index.html never
cached, the app's own routes falling back to index.html, the API's 404s staying JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.api import create_app
from crm.web.app_files import find_web_dist

from ..support import random_address
from .conftest import api_settings

INDEX = b"<!doctype html><html><head><script type=module src=/assets/app-3f9a1c.js></script></head></html>"
SCRIPT = b"console.log('jggl')"

Client = Callable[[Path], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    """A build as Vite leaves it, next to a file that must never be served."""
    (tmp_path / "secret.txt").write_text("not for browsers")
    build = tmp_path / "dist"
    (build / "assets").mkdir(parents=True)
    (build / "index.html").write_bytes(INDEX)
    (build / "assets" / "app-3f9a1c.js").write_bytes(SCRIPT)
    (build / "favicon.svg").write_text("<svg/>")
    return build


@pytest.fixture
def client(pg_schema: str, crm_engine: AsyncEngine, redis: Redis) -> Client:
    @asynccontextmanager
    async def make(web_dist: Path) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(api_settings(pg_schema, web_dist=str(web_dist)), engine=crm_engine, redis=redis)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=(random_address(), 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://crm.test") as http:
                yield http

    return make


async def test_hashed_assets_are_cached_for_a_year(client: Client, dist: Path) -> None:
    async with client(dist) as http:
        response = await http.get("/assets/app-3f9a1c.js")
        missing = await http.get("/assets/app-000000.js")
    assert response.status_code == 200
    assert response.content == SCRIPT
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "javascript" in response.headers["content-type"]
    # A missing asset is a 404, never index.html served as JavaScript.
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("path", ["/", "/index.html", "/deals/42", "/pipeline", "/admin/settings?tab=meta"])
async def test_the_app_and_its_routes_answer_index_html_uncached(client: Client, dist: Path, path: str) -> None:
    async with client(dist) as http:
        response = await http.get(path)
        head = await http.head(path)
    assert response.status_code == 200
    assert response.content == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert head.status_code == 200
    assert head.headers["cache-control"] == "no-cache"


async def test_top_level_files_of_the_build_are_served(client: Client, dist: Path) -> None:
    async with client(dist) as http:
        response = await http.get("/favicon.svg")
    assert response.status_code == 200
    assert response.text == "<svg/>"
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize("path", ["/..%2fsecret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt"])
async def test_nothing_outside_the_build_is_served(client: Client, dist: Path, path: str) -> None:
    async with client(dist) as http:
        response = await http.get(path)
    assert b"not for browsers" not in response.content


async def test_the_api_keeps_its_own_answers(client: Client, dist: Path) -> None:
    async with client(dist) as http:
        unknown = await http.get("/api/no-such-thing")
        nested = await http.get("/api/deals/1/no-such-thing")
        wrong_method = await http.get("/api/auth/login")
        not_a_page = await http.post("/deals/42")
        docs = await http.get("/docs")
        schema = await http.get("/openapi.json")
        health = await http.get("/healthz")
        me = await http.get("/api/me")
    for response in (unknown, nested):
        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found"}
    assert wrong_method.status_code == 405
    assert not_a_page.status_code in (404, 405)
    assert not_a_page.content != INDEX
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()
    assert schema.json()["info"]["title"] == "JGGL CRM"
    assert health.status_code == 200
    assert health.content != INDEX
    assert me.status_code == 401


async def test_without_a_build_the_page_says_how_to_build_it(client: Client, tmp_path: Path) -> None:
    empty = tmp_path / "nothing-here"
    async with client(empty) as http:
        root = await http.get("/")
        route = await http.get("/deals/42")
        api = await http.get("/api/no-such-thing")
        asset = await http.get("/assets/app-3f9a1c.js")
    for response in (root, route):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "not built" in response.text
        assert "npm run build" in response.text
    assert api.status_code == 404
    assert api.json() == {"detail": "Not Found"}
    assert asset.status_code == 404


def test_web_dist_is_the_configured_directory_or_the_repositorys_web_dist(tmp_path: Path) -> None:
    assert find_web_dist(str(tmp_path)) == tmp_path.resolve()
    default = find_web_dist()
    assert (default.parent.name, default.name) == ("web", "dist")

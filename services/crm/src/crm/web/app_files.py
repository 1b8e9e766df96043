"""The built web app's files, served by crm at ``/`` beside the API.

* ``/assets/*``: Vite's content-hashed bundles, cached by browsers for a year (a new build
  has new names, so nothing stale is ever used).
* ``index.html`` and the build's other top-level files (favicon...): ``no-cache``, so a new
  deployment is picked up on the next load.
* Any other ``GET`` outside ``/api`` is one of the app's own routes (``/deals/42``...): the
  browser gets ``index.html`` and the app's router takes over. Unknown ``/api/...`` paths
  (and missing assets) stay JSON 404s.

The fallback is an answer to "no route matched", not a catch-all route, so the API's
routes keep their own 404/405 answers and the OpenAPI schema does not see it.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from jggl_common.logs import get_logger

log = get_logger(__name__)

ASSETS_CACHE = "public, max-age=31536000, immutable"
INDEX_CACHE = "no-cache"

NOT_BUILT = """JGGL CRM: the web app is not built.

The API works: see /docs.

Build it with `cd web && npm ci && npm run build` (Node.js 20.19 or newer), then reload
this page. crm serves the build from WEB_DIST (default: web/dist in the repository).
"""

# Paths that never fall back to the app: the API, the build's assets, crm's own pages.
_NO_FALLBACK = ("/api/", "/assets/", "/docs/", "/redoc/")
_NO_FALLBACK_EXACT = frozenset(
    {"/api", "/assets", "/docs", "/redoc", "/openapi.json", "/healthz", "/readyz", "/metrics"}
)


def find_web_dist(configured: str = "") -> Path:
    """Where the build is: ``WEB_DIST`` when set, else ``web/dist`` of the repository crm runs from.

    The repository is found by walking up from this package (an editable or workspace
    install lives inside it) and, failing that, from the working directory.
    """
    if configured:
        return Path(configured).expanduser().resolve()
    starts = [Path(__file__).resolve().parent, Path(os.getcwd()).resolve()]
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / "web" / "dist"
            if (candidate / "index.html").is_file():
                return candidate
    return Path(os.getcwd()).resolve() / "web" / "dist"


class _ImmutableAssets(StaticFiles):
    """Static files whose names change with their content: cached for a year."""

    async def check_config(self) -> None:
        """Not built (yet) is not a misconfiguration: every asset is then a 404, not a 500."""
        if self.directory is not None and not await anyio.Path(self.directory).is_dir():
            return
        await super().check_config()

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = ASSETS_CACHE
        return response


def _top_level_file(dist: Path, path: str) -> Path | None:
    """A file at the top of the build (``/favicon.ico``), never anything outside it."""
    name = path.strip("/")
    if not name or "/" in name or name.startswith("."):
        return None
    candidate = (dist / name).resolve()
    if candidate.parent != dist or not candidate.is_file():
        return None
    return candidate


def _page_file(dist: Path, path: str) -> Path | None:
    """What a page request gets: a top-level file of the build, else index.html; None without a build."""
    index = dist / "index.html"
    if not index.is_file():
        return None
    return _top_level_file(dist, path) or index


def install_app_files(app: FastAPI, dist: Path) -> None:
    """Serve the build in ``dist`` (or, while there is none, a page saying how to build it)."""
    dist = dist.resolve()
    index = dist / "index.html"
    if index.is_file():
        log.info("serving the web app", web_dist=str(dist))
    else:
        log.info("the web app is not built: / explains how to build it", web_dist=str(dist))
    app.mount("/assets", _ImmutableAssets(directory=dist / "assets", check_dir=False), name="assets")

    async def not_found(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        path = request.url.path
        if (
            exc.status_code != 404
            or request.method not in ("GET", "HEAD")
            or path in _NO_FALLBACK_EXACT
            or path.startswith(_NO_FALLBACK)
        ):
            return await http_exception_handler(request, exc)
        file = await anyio.to_thread.run_sync(_page_file, dist, path)
        if file is None:
            return PlainTextResponse(NOT_BUILT, headers={"Cache-Control": INDEX_CACHE})
        return FileResponse(file, headers={"Cache-Control": INDEX_CACHE})

    app.add_exception_handler(StarletteHTTPException, not_found)

"""The managers' HTTP API: the composition root that wires settings, storage and routers.

``create_app`` builds everything a request needs once. What it is given (engine, Redis,
outbox) the caller owns and closes; what it creates itself it closes on shutdown. Work
that must live as long as the API (the inbound consumer, the outbox relay...) is passed
as ``lifespan_extras``: context manager factories entered after start-up, in order, and
exited in reverse before the connections close.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, Request, Response
from nats.aio.client import Client as NatsClient
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection

from jggl_common.crypto import configure_fingerprints
from jggl_common.db import create_engine, session_factory, session_scope
from jggl_common.forwarded import ForwardedMiddleware
from jggl_common.health import ReadinessCheck, health_router
from jggl_common.logs import CORRELATION_HEADER, correlation_from_headers, get_logger, set_correlation_id
from jggl_common.outbox import Outbox

from .audit import endpoints as audit_endpoints
from .auth import endpoints as auth_endpoints
from .auth.browser import BrowserSessions
from .auth.headers import SecurityHeaders
from .auth.keys import signing_keys
from .auth.passwords import Passwords
from .auth.ratelimit import LoginLimiter
from .auth.service import ensure_first_admin
from .auth.tokens import Tokens
from .channels import endpoints as channels_endpoints
from .config import CrmSettings
from .contacts import endpoints as contacts_endpoints
from .deals import endpoints as deals_endpoints
from .jobs import endpoints as jobs_endpoints
from .limits import install_rate_limits
from .live import endpoints as live_endpoints
from .live.streams import LiveEvents
from .outbound import endpoints as outbound_endpoints
from .pipeline import endpoints as pipeline_endpoints
from .search import endpoints as search_endpoints
from .settings import endpoints as settings_endpoints
from .stats import endpoints as stats_endpoints
from .tasks import endpoints as tasks_endpoints
from .telegram_link import endpoints as telegram_link_endpoints
from .users import endpoints as users_endpoints
from .web.app_files import find_web_dist, install_app_files
from .web.errors import install_error_handlers
from .web.openapi import install_openapi
from .web.pagination import CursorCodec
from .web.state import CrmState

log = get_logger(__name__)

LifespanExtra = Callable[[FastAPI], AbstractAsyncContextManager[Any]]
"""Extra start-up/shutdown work: called with the app (``app.state.crm`` is ready), entered on start."""

REDIS_TIMEOUT_SECONDS = 0.5


def create_app(
    settings: CrmSettings,
    *,
    engine: AsyncEngine | None = None,
    redis: Redis | None = None,
    outbox: Outbox | None = None,
    lifespan_extras: Sequence[LifespanExtra] | None = None,
    nats: NatsClient | None = None,
) -> FastAPI:
    """The crm HTTP application.

    ``outbox``, when given, publishes the events a request staged right after it commits
    (otherwise they wait for the relay). ``lifespan_extras`` run inside the app's lifespan,
    e.g. ``lambda app: run_consumer(app.state.crm.sessions)``. ``nats``, crm's connection
    to the broker, feeds the live event streams (``GET /api/events`` answers 503 without it).
    """
    # Secrets are shown as keyed fingerprints (jggl_common.crypto.mask), stable for this APP_KEY.
    configure_fingerprints(settings.app_key)
    if not settings.auth_signing_key:
        log.warning("AUTH_SIGNING_KEY is not set: a random key signs sessions (they end at restart, replicas differ)")
    csrf_keys = signing_keys(settings, "csrf-token")
    owns_engine = engine is None
    owns_redis = redis is None
    db = engine or create_engine(settings.database_url, settings.db_schema)
    cache = redis or Redis.from_url(
        settings.redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
    )
    state = CrmState(
        settings=settings,
        engine=db,
        sessions=session_factory(db),
        redis=cache,
        passwords=Passwords(),
        tokens=Tokens(signing_keys(settings, "access-token"), settings.token_ttl_seconds),
        login_limiter=LoginLimiter(cache, settings.login_attempts_per_15_min, timeout=REDIS_TIMEOUT_SECONDS),
        cursors=CursorCodec(signing_keys(settings, "list-cursor")[0]),
        browser=BrowserSessions(
            csrf_key=csrf_keys[0],
            previous_csrf_keys=csrf_keys[1:],
            secure=settings.session_cookie_secure
            if settings.session_cookie_secure is not None
            else settings.app_url.lower().startswith("https://"),
            max_age=settings.token_ttl_seconds,
        ),
        outbox=outbox,
        live=LiveEvents(nats, heartbeat_seconds=settings.live_events_heartbeat_seconds) if nats is not None else None,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if owns_engine:
                stack.push_async_callback(db.dispose)
            if owns_redis:
                stack.push_async_callback(cache.aclose)
            bootstrap = asyncio.create_task(_bootstrap_admin(state))
            stack.push_async_callback(_cancel, bootstrap)
            for extra in lifespan_extras or ():
                await stack.enter_async_context(extra(app))
            yield

    app = FastAPI(
        title="JGGL CRM",
        description=(
            "The managers' API: deals, conversations, contacts, the pipeline and search. "
            "Log in with POST /api/auth/login and send the token as `Authorization: Bearer …`; "
            "the web app signs in with POST /api/auth/session (an httpOnly session cookie, and "
            "X-CSRF-Token on every POST/PUT/PATCH/DELETE)."
        ),
        version="1.0.0",
        lifespan=lifespan,
        # API_DOCS=false (production): no /docs, /redoc or /openapi.json; the web app's client
        # is generated from the committed web/openapi.json, never from a running crm.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
        openapi_url="/openapi.json" if settings.api_docs else None,
    )
    app.state.crm = state
    install_error_handlers(app)

    @app.middleware("http")
    async def correlation(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        correlation_id = correlation_from_headers(request.headers)
        set_correlation_id(correlation_id)
        response = await call_next(request)
        response.headers[CORRELATION_HEADER] = correlation_id
        return response

    async def postgres_ready() -> bool:
        async with db.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True

    async def redis_ready() -> bool:
        return bool(await cache.ping())

    async def nats_ready() -> bool:
        return nats is not None and nats.is_connected

    # PostgreSQL holds everything and NATS brings the messages: crm cannot work without
    # either (NATS is checked when crm is given its connection). Redis only shares the
    # login and send rate limits between replicas, each replica falls back to its own
    # while it is down: optional, shown as degraded.
    required: dict[str, ReadinessCheck] = {"postgres": postgres_ready}
    if nats is not None:
        required["nats"] = nats_ready
    app.include_router(health_router(required, optional={"redis": redis_ready}))
    for router in (
        auth_endpoints.router,
        users_endpoints.router,
        deals_endpoints.router,
        outbound_endpoints.router,
        contacts_endpoints.router,
        pipeline_endpoints.router,
        search_endpoints.router,
        tasks_endpoints.router,
        stats_endpoints.router,
        telegram_link_endpoints.router,
        settings_endpoints.router,
        audit_endpoints.router,
        jobs_endpoints.router,
        channels_endpoints.router,
        live_endpoints.router,
    ):
        app.include_router(router)
    # Last: the web app answers the GETs no route above took.
    install_app_files(app, find_web_dist(settings.web_dist))
    install_openapi(app)
    install_rate_limits(
        app, settings, cache, state.tokens, client_address=_client_address, timeout=REDIS_TIMEOUT_SECONDS
    )
    app.add_middleware(SecurityHeaders, hsts_max_age_seconds=settings.hsts_max_age_seconds, docs=settings.api_docs)
    # Outermost: everything inside (login limits, audit rows, rate limits) sees the client's own
    # address, found behind the proxies FORWARDED_ALLOW_IPS trusts (uvicorn's own handling is off).
    app.add_middleware(ForwardedMiddleware, trusted=settings.trusted_proxies)
    return app


def _client_address(connection: HTTPConnection) -> str:
    return connection.client.host if connection.client else "unknown"


async def _bootstrap_admin(state: CrmState) -> None:
    """Create the first admin from ADMIN_EMAIL / ADMIN_PASSWORD, retrying until the database answers."""
    settings = state.settings
    if not settings.admin_email or not settings.admin_password:
        return
    delay = 0.5
    while True:
        try:
            async with session_scope(state.sessions) as session:
                created = await ensure_first_admin(
                    session, state.passwords, email=settings.admin_email, password=settings.admin_password
                )
            if created:
                log.info("first admin created", email=settings.admin_email.strip().lower())
            return
        except Exception as exc:
            log.warning("first admin not created yet", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task

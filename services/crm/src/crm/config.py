"""crm configuration (environment variables; see the README's table)."""

from __future__ import annotations

from pydantic import Field

from jggl_common.settings import KeyList, OptionalKey, ServiceSettings


class CrmSettings(ServiceSettings):
    """What crm needs. Runtime settings (tokens, SLA...) start from these defaults."""

    service_name: str = "crm"
    port: int = 8000
    database_url: str = Field(description="PostgreSQL, e.g. postgresql://postgres@127.0.0.1:5432/jggl")
    redis_url: str = Field(description="Redis for login throttling and caches")
    db_schema: str = Field(default="crm", description="the Postgres schema crm owns")
    meta_graph_url: str = "https://graph.facebook.com"
    meta_graph_version: str = "v25.0"
    meta_access_token: str = Field(default="", description="default page token for channels without their own")
    meta_app_id: str = ""
    meta_sync_calls_per_second: float = Field(
        default=2.0, gt=0, description="Conversations API calls per second of the Meta backfill (Meta allows about 2)"
    )
    meta_sync_first_hours: int = Field(
        default=24, ge=1, le=24 * 30, description="how far back a channel's first backfill looks"
    )
    meta_sync_max_seconds: int = Field(
        default=600, ge=10, description="a Meta backfill run stops taking new channels after this; the next run goes on"
    )
    meta_sync_overlap_minutes: int = Field(
        default=10, ge=0, description="each backfill looks again this far before the previous one's start"
    )
    meta_page_id: str = ""
    admin_email: str = ""
    admin_password: str = ""
    auth_signing_key: OptionalKey = Field(
        default="",
        description=(
            "crm's own base64 32-byte key signing access tokens, CSRF tokens and list cursors (no other service "
            "holds it); unset: a random key per process (sessions end at restart and are not shared by replicas)"
        ),
    )
    auth_signing_key_previous: KeyList = Field(
        default="",
        description="AUTH_SIGNING_KEY values before a rotation, comma-separated: their tokens stay valid until expiry",
    )
    token_ttl_seconds: int = Field(default=12 * 3600, ge=60)
    api_docs: bool = Field(default=True, description="serve /docs, /redoc and /openapi.json; switch off in production")
    hsts_max_age_seconds: int = Field(
        default=365 * 24 * 3600,
        ge=0,
        description="Strict-Transport-Security max-age on answers to requests that came over TLS; 0 sends none",
    )
    session_cookie_secure: bool | None = Field(
        default=None, description="Secure flag of the browser session cookies; unset: on when APP_URL is https"
    )
    login_attempts_per_15_min: int = Field(default=10, ge=1)
    api_rate_per_minute: int = Field(
        default=60, ge=0, description="API requests a minute per user calling with a bearer token; 0: unlimited"
    )
    api_rate_burst: int = Field(default=30, ge=1, description="of those, how many may come at once")
    api_browser_rate_per_minute: int = Field(
        default=600, ge=0, description="API requests a minute per user signed in to the web app; 0: unlimited"
    )
    api_browser_rate_burst: int = Field(default=300, ge=1, description="of those, how many may come at once")
    api_address_rate_per_minute: int = Field(
        default=120,
        ge=0,
        description="API requests a minute per client address without valid credentials; 0: unlimited",
    )
    api_address_rate_burst: int = Field(default=60, ge=1, description="of those, how many may come at once")
    web_dist: str = Field(
        default="", description="directory of the built web app served at /; unset: web/dist of the repository"
    )
    live_events_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="a live stream sends a heartbeat comment after this many idle seconds"
    )
    live_max_streams_per_user: int = Field(
        default=10,
        ge=0,
        description="live event streams (GET /api/events) a user may have open at once, over every replica; 0: no cap",
    )
    consumer_workers: int = Field(
        default=256, ge=1, description="Meta items handled concurrently per replica (and the most in one transaction)"
    )
    inbound_transactions: int = Field(
        default=2,
        ge=1,
        description="inbound transactions open at once per replica; messages arriving meanwhile share the next",
    )
    outbox_retention_hours: float = Field(
        default=24.0, gt=0, description="how long published events stay in the outbox table"
    )
    inbound_leftovers_retention_days: float = Field(
        default=7.0, gt=0, description="updates waiting for a message that never came, and receipts, are kept this long"
    )
    system_log_retention_days: float = Field(
        default=90.0,
        ge=31,
        description="dead letters and integration failures stay in the system log this long (past the DLQ's 30 days)",
    )
    db_pool_size: int = Field(
        default=24, ge=2, description="PostgreSQL connections kept open per replica (consumers, sender, API)"
    )
    meta_human_agent: bool = Field(
        default=False, description="default of the meta.human_agent setting: HUMAN_AGENT replies 24 h - 7 days"
    )
    profile_fetch_workers: int = Field(
        default=4, ge=1, description="Graph API profile fetches in flight per replica (in the background)"
    )
    send_workers: int = Field(default=4, ge=1, description="replies sent concurrently per replica")
    send_rate_messenger: float = Field(default=250.0, gt=0, description="Send API calls per second per Facebook Page")
    send_rate_instagram: float = Field(
        default=90.0, gt=0, description="Send API calls per second per Instagram account"
    )
    send_max_attempts: int = Field(default=6, ge=1, description="Send API calls per reply before it fails")
    send_retry_base_seconds: float = Field(default=2.0, gt=0, description="first retry delay; doubles each time")
    send_retry_max_seconds: float = Field(
        default=900.0, gt=0, description="longest wait before a retry, even when Meta asks for more"
    )
    channel_token_warning_days: float = Field(
        default=7.0, ge=0, description="channel health: a page token expiring within this many days is a problem"
    )
    channel_silence_hours: float = Field(
        default=6.0, gt=0, description="channel health: business hours without a webhook before a page counts as silent"
    )

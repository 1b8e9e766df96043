"""crm configuration (environment variables; see the README's table)."""

from __future__ import annotations

from pydantic import Field

from jggl_common.settings import ServiceSettings


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
    meta_page_id: str = ""
    admin_email: str = ""
    admin_password: str = ""
    token_ttl_seconds: int = Field(default=12 * 3600, ge=60)
    login_attempts_per_15_min: int = Field(default=10, ge=1)
    consumer_workers: int = Field(default=8, ge=1, description="messages handled concurrently per replica")

"""Helpers shared by crm's API test suites."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any

from crm.config import CrmSettings
from jggl_common.testing import TEST_DATABASE_URL, TEST_NATS_URL

API_REDIS_URL = "redis://127.0.0.1:6379/14"
APP_KEY = base64.b64encode(hashlib.sha256(b"crm api tests").digest()).decode()


def crm_settings(schema: str, **overrides: Any) -> CrmSettings:
    """Settings for an app under test on ``schema``; nothing comes from the environment's .env."""
    values: dict[str, Any] = {
        "app_key": APP_KEY,
        "nats_url": TEST_NATS_URL,
        "app_url": "http://crm.test",
        "database_url": TEST_DATABASE_URL,
        "redis_url": API_REDIS_URL,
        "db_schema": schema,
        "admin_email": "",
        "admin_password": "",
        **overrides,
    }
    return CrmSettings(_env_file=None, **values)


def random_address() -> str:
    """A client address no other test uses (the login limiter counts per address)."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}"

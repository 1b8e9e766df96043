"""Service configuration from the environment (and an optional ``.env``).

Every service subclasses :class:`ServiceSettings` and loads it with :func:`load_settings`,
which turns a validation error into one line naming the variable and the reason, and
stops the process: a misconfigured service must never start half-working.
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
from typing import Annotated, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .forwarded import TrustedProxies

__all__ = ["AppKey", "ConfigurationError", "KeyList", "OptionalKey", "ServiceSettings", "load_settings", "split_keys"]


def _check_app_key(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (generate one with: openssl rand -base64 32)") from None
    if len(raw) != 32:
        raise ValueError(f"must decode to 32 bytes, got {len(raw)}")
    return value


_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")

AppKey = Annotated[str, AfterValidator(_check_app_key)]
"""A base64 string of exactly 32 bytes: the root secret every encryption key derives from."""


def split_keys(value: str) -> tuple[str, ...]:
    """The keys of a comma-separated list, blanks dropped."""
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _check_key_list(value: str) -> str:
    for position, key in enumerate(split_keys(value), start=1):
        try:
            _check_app_key(key)
        except ValueError as exc:
            raise ValueError(f"key {position} {exc}") from None
    return value


def _check_optional_key(value: str) -> str:
    return _check_app_key(value) if value else value


OptionalKey = Annotated[str, AfterValidator(_check_optional_key)]
"""Like :data:`AppKey`, or empty (unset)."""

KeyList = Annotated[str, AfterValidator(_check_key_list)]
"""Comma-separated base64 32-byte keys, possibly none (e.g. the keys in force before a rotation)."""


class ServiceSettings(BaseSettings):
    """Settings every service needs. Required fields have no default."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    service_name: str = Field(default="jggl", description="name used in logs, metrics and DLQ subjects")
    app_key: AppKey = Field(description="base64 32-byte root key (APP_KEY)")
    app_key_previous: KeyList = Field(
        default="",
        description="APP_KEY values before a rotation, comma-separated: still read, never used to seal",
    )
    nats_url: str = Field(description="NATS server URL, e.g. nats://127.0.0.1:4222")
    app_url: str = Field(description="public base URL of the CRM, used in links")
    nats_user: str | None = Field(
        default=None, description="this service's NATS user (deploy/nats/auth.conf); unset connects anonymously"
    )
    nats_password: SecretStr | None = Field(default=None, description="the password of NATS_USER")
    nats_stream_replicas: int | None = Field(
        default=None, description="servers storing each stream (1, 3 or 5); unset keeps what exists"
    )
    settings_bucket: str = Field(default="SETTINGS", description="JetStream key-value bucket of live settings")
    log_level: str = "INFO"
    host: str = "0.0.0.0"
    forwarded_allow_ips: str = Field(
        default="",
        description=(
            "reverse proxies whose X-Forwarded-For is believed: comma-separated IPs or CIDRs "
            "(e.g. 10.0.0.0/8); empty trusts none (see jggl_common.forwarded)"
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _nats_credentials(cls, data: Any) -> Any:
        """Fold ``NATS_USER``/``NATS_PASSWORD`` into ``nats_url``: every connection a
        service opens (its bus, its live settings) then authenticates, and nothing prints
        the password (FastStream strips it from what it shows, our logs never name the URL)."""
        if not isinstance(data, dict):
            return data
        user, password = data.get("nats_user"), data.get("nats_password")
        if isinstance(password, SecretStr):
            password = password.get_secret_value()
        url = data.get("nats_url")
        if not user or not isinstance(url, str):
            return data
        parts = urlsplit(url)
        if parts.username:  # already folded in (settings built again from their own values)
            return data
        if not password:
            raise ValueError("NATS_PASSWORD is missing: NATS_USER needs it")
        for name, value in (("NATS_USER", str(user)), ("NATS_PASSWORD", str(password))):
            if not _URL_SAFE.fullmatch(value):
                raise ValueError(f"{name} may hold only letters, digits and - _ . ~ (e.g. openssl rand -hex 24)")
        netloc = f"{user}:{password}@{parts.netloc}"
        return {**data, "nats_url": urlunsplit(parts._replace(netloc=netloc))}

    @field_validator("nats_stream_replicas")
    @classmethod
    def _odd_replicas(cls, value: int | None) -> int | None:
        if value is not None and value not in (1, 3, 5):
            raise ValueError("must be 1, 3 or 5 (a JetStream replica group needs a majority)")
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_list(cls, value: str) -> str:
        TrustedProxies.parse(value)
        return value

    @property
    def app_keys(self) -> tuple[str, ...]:
        """``APP_KEY`` first, then ``APP_KEY_PREVIOUS``: the key ring sealed values are opened with."""
        return (self.app_key, *split_keys(self.app_key_previous))

    @property
    def trusted_proxies(self) -> TrustedProxies:
        """``FORWARDED_ALLOW_IPS`` parsed."""
        return TrustedProxies.parse(self.forwarded_allow_ips)


class ConfigurationError(SystemExit):
    """Raised by :func:`load_settings`; its message is the one line an operator reads."""


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT], **overrides: object) -> SettingsT:
    """Build ``cls`` from the environment, or stop with one clear line.

    The line names the environment variable (upper case, as the operator sets it) and
    why it was refused, e.g. ``configuration error: APP_KEY is missing (required)``.
    """
    try:
        return cls(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(part) for part in err["loc"]).upper() or "?"
            if err["type"] == "missing":
                problems.append(f"{name} is missing (required)")
            else:
                reason = err["msg"].removeprefix("Value error, ")
                problems.append(f"{name} is invalid: {reason}")
        line = "configuration error: " + "; ".join(problems)
        print(line, file=sys.stderr)
        raise ConfigurationError(line) from None

"""What each runtime setting accepts, and where its default comes from.

The keys and their secrecy come from ``KNOWN_SETTINGS`` (shared by every service). Here
each key gets a check that turns a bad value into one sentence an admin can act on, and
a normal form, so services reading the bucket never have to guess ("TRUE", " 15 "...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values

from crm.config import CrmSettings
from crm.sla import parse_hours
from jggl_common.live_settings import KNOWN_SETTINGS, SettingSpec

__all__ = ["InvalidSetting", "environment", "environment_default", "normalize", "spec_of"]

MAX_LENGTH = 4096
MAX_SLA_MINUTES = 7 * 24 * 60
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


class InvalidSetting(ValueError):
    """The value cannot be used for this key; the message says why, as a sentence."""


def spec_of(key: str) -> SettingSpec | None:
    """The setting named ``key``, or None when there is no such runtime setting."""
    return KNOWN_SETTINGS.get(key)


def _minutes(key: str, value: str) -> str:
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_SLA_MINUTES:
        raise InvalidSetting(f"{key} must be a whole number of minutes from 1 to {MAX_SLA_MINUTES}.")
    return str(int(value))


def _timezone(key: str, value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSetting(f"{key} must be an IANA time zone such as Europe/Berlin; '{value}' is not one.") from None
    return value


def _hours(key: str, value: str) -> str:
    try:
        parse_hours(value)
    except ValueError as exc:
        raise InvalidSetting(f"{key} {exc}.") from None
    return value


def _flag(key: str, value: str) -> str:
    lowered = value.lower()
    if lowered not in ("true", "false"):
        raise InvalidSetting(f"{key} must be true or false.")
    return lowered


def _model(key: str, value: str) -> str:
    if not _MODEL.match(value):
        raise InvalidSetting(f"{key} must be a model name such as gemini-2.5-flash (letters, digits, . _ / -).")
    return value


def _number(low: float, high: float, *, whole: bool = False) -> Callable[[str, str], str]:
    def check(key: str, value: str) -> str:
        try:
            number = int(value) if whole else float(value)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            kind = "a whole number" if whole else "a number"
            raise InvalidSetting(f"{key} must be {kind} from {low:g} to {high:g}.")
        return str(number)

    return check


def _telegram_mode(key: str, value: str) -> str:
    lowered = value.lower()
    if lowered not in ("webhook", "polling"):
        raise InvalidSetting(f"{key} must be webhook or polling.")
    return lowered


def _unassigned_leads(key: str, value: str) -> str:
    lowered = value.lower()
    if lowered not in ("everyone", "admins", "round_robin"):
        raise InvalidSetting(f"{key} must be everyone, admins or round_robin.")
    return lowered


def _token(key: str, value: str) -> str:
    if any(character.isspace() for character in value):
        raise InvalidSetting(f"{key} must not contain spaces or line breaks.")
    return value


_CHECKS: dict[str, Callable[[str, str], str]] = {
    "sla.minutes": _minutes,
    "business.timezone": _timezone,
    "business.hours": _hours,
    "meta.human_agent": _flag,
    "gemini.model": _model,
    "ai.enabled": _flag,
    "ai.debounce_seconds": _number(0, 3600),
    "ai.requests_per_minute": _number(0.1, 10000),
    "ai.concurrency": _number(1, 64, whole=True),
    "telegram.mode": _telegram_mode,
    "notify.unassigned_leads": _unassigned_leads,
}


def normalize(key: str, raw: str) -> str:
    """The value as stored and propagated; :class:`InvalidSetting` when it is unusable."""
    spec = KNOWN_SETTINGS[key]
    value = raw.strip()
    if not value:
        raise InvalidSetting(f"{key} must not be empty; delete the setting to go back to the environment's default.")
    if len(value) > MAX_LENGTH:
        raise InvalidSetting(f"{key} must be at most {MAX_LENGTH} characters long.")
    if any(ord(character) < 32 or ord(character) == 127 for character in value):
        raise InvalidSetting(f"{key} must not contain control characters.")
    check = _CHECKS.get(key, _token if spec.secret else None)
    return check(key, value) if check else value


def environment(env_file: str | None = ".env") -> dict[str, str]:
    """The variables defaults come from: ``env_file`` overlaid by the process environment."""
    values: dict[str, str] = {}
    if env_file and os.path.exists(env_file):
        values.update({name: value for name, value in dotenv_values(env_file).items() if value is not None})
    values.update(os.environ)
    return values


def environment_default(key: str, settings: CrmSettings, environ: Mapping[str, str]) -> str | None:
    """The value services fall back to without an override: the variable in ``environ``
    (see :func:`environment`), else crm's own configuration; None when neither sets it."""
    name = KNOWN_SETTINGS[key].env
    value = environ.get(name)
    if value is None:
        configured = getattr(settings, name.lower(), None)
        value = configured if isinstance(configured, str) else None
    if value is None or not value.strip():
        return None
    return value.strip()

"""Input types that keep hostile or impossible values out of the database.

PostgreSQL refuses NUL characters and unpaired surrogates in text, and ids are 32-bit:
such input must be a 422, never a driver error surfacing as a 500.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator

INT4_MAX = 2_147_483_647
"""The largest id PostgreSQL's ``integer`` holds."""


def clean_text(value: str) -> str:
    """Refuse text PostgreSQL cannot store (NUL, lone surrogates)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def aware_utc(value: datetime) -> datetime:
    """Datetimes without a zone are taken as UTC; all are returned in UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("date out of range") from None


CleanStr = Annotated[str, AfterValidator(clean_text)]
"""A string PostgreSQL can store."""

UtcDatetime = Annotated[datetime, AfterValidator(aware_utc)]
"""A timezone-aware UTC datetime (naive input is taken as UTC)."""

DealId = Annotated[int, Path(ge=1, le=INT4_MAX, description="deal id")]
UserId = Annotated[int, Path(ge=1, le=INT4_MAX, description="user id")]
ContactId = Annotated[int, Path(ge=1, le=INT4_MAX, description="contact id")]
StageId = Annotated[int, Path(ge=1, le=INT4_MAX, description="stage id")]

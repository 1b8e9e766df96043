"""What the users API reads and writes."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from crm.auth.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from crm.web.types import CleanStr

Role = Literal["admin", "manager"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def normalize_email(value: str) -> str:
    """E-mails are stored and compared trimmed and lower-cased."""
    email = value.strip().lower()
    if not _EMAIL.match(email):
        raise ValueError("is not an e-mail address")
    return email


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value.strip()


Email = Annotated[
    CleanStr, Field(max_length=320, json_schema_extra={"format": "email"}), AfterValidator(normalize_email)
]
Name = Annotated[CleanStr, Field(min_length=1, max_length=200), AfterValidator(_not_blank)]
NewPassword = Annotated[
    CleanStr,
    Field(
        min_length=MIN_PASSWORD_LENGTH,
        max_length=MAX_PASSWORD_LENGTH,
        description=f"at least {MIN_PASSWORD_LENGTH} characters",
    ),
]


class UserRead(BaseModel):
    """A user as the API shows it (never the password hash)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    role: Role
    is_active: bool
    created_at: datetime
    updated_at: datetime


class MeRead(UserRead):
    """The signed-in user, with what their app needs to show times right."""

    business_timezone: str = Field(
        description="IANA zone the business works in (setting business.timezone): dates and times are shown in it"
    )


class UserList(BaseModel):
    """Every user, admins first, then by name."""

    items: list[UserRead]


class UserCreate(BaseModel):
    """A new admin or manager."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    name: Name
    password: NewPassword
    role: Role = "manager"


class UserUpdate(BaseModel):
    """Changes to a user; absent fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    role: Role | None = None
    is_active: bool | None = None
    password: NewPassword | None = Field(default=None, description="a new password ends the user's sessions")

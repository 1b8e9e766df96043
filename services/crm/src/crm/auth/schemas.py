"""What the login endpoint reads and answers."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm.auth.passwords import MAX_PASSWORD_LENGTH
from crm.users.schemas import MeRead
from crm.web.types import CleanStr


class LoginRequest(BaseModel):
    """E-mail and password."""

    model_config = ConfigDict(extra="forbid")

    email: Annotated[CleanStr, Field(min_length=1, max_length=320)]
    password: Annotated[CleanStr, Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)]


class TokenResponse(BaseModel):
    """A bearer token for the ``Authorization`` header."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="seconds until the token expires")


class SessionResponse(BaseModel):
    """A browser session opened: who signed in, and the CSRF token to echo in ``X-CSRF-Token``."""

    user: MeRead
    csrf_token: str = Field(description="also set as the readable cookie jggl_csrf; send it in X-CSRF-Token")

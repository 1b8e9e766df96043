"""Errors that services raise and the HTTP layer turns into ``{"detail": ...}`` answers.

Services speak in these business errors instead of HTTP exceptions, so the same service
code serves the API, the CLI and the message consumers alike.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel


class CrmError(Exception):
    """A refusal that the caller can understand and act on."""

    status_code: ClassVar[int] = 400

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers


class BadRequest(CrmError):
    """The request cannot be understood (e.g. a damaged cursor)."""

    status_code = 400


class Unauthorized(CrmError):
    """No valid credentials."""

    status_code = 401


class Forbidden(CrmError):
    """Valid credentials, but this role may not do that."""

    status_code = 403


class NotFound(CrmError):
    """Does not exist, or is not visible to the caller (existence is not revealed)."""

    status_code = 404


class Conflict(CrmError):
    """The request clashes with the current state (duplicate, already taken, ...)."""

    status_code = 409


class Unprocessable(CrmError):
    """Well-formed but semantically invalid input."""

    status_code = 422


class TooManyRequests(CrmError):
    """Rate limited; ``Retry-After`` says when to try again."""

    status_code = 429


class ErrorMessage(BaseModel):
    """The body of every refusal."""

    detail: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the refusals an endpoint can answer with."""
    descriptions = {
        400: "Bad input",
        401: "Missing, invalid or expired token",
        403: "Not allowed for this role",
        404: "Not found, or not visible to you",
        409: "Conflicts with the current state",
        429: "Too many attempts",
    }
    return {code: {"model": ErrorMessage, "description": descriptions[code]} for code in codes}


async def _crm_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CrmError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every :class:`CrmError` as JSON with its status."""
    app.add_exception_handler(CrmError, _crm_error_handler)

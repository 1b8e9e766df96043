"""Errors that services raise and the HTTP layer turns into ``{"detail": ...}`` answers.

Services speak in these business errors instead of HTTP exceptions, so the same service
code serves the API, the CLI and the message consumers alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


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


class ServiceUnavailable(CrmError):
    """A dependency crm needs for this request does not answer right now."""

    status_code = 503


class ErrorMessage(BaseModel):
    """The body of every refusal."""

    detail: str


class FieldError(BaseModel):
    """One input that was refused: where it is and what is wrong with it."""

    loc: list[str | int] = Field(
        description='where: ["body", "email"], ["query", "limit"], ["header", "Last-Event-ID"]...'
    )
    msg: str = Field(description="what is wrong, as a sentence")
    type: str = Field(description="pydantic's error type, e.g. missing, string_too_long, value_error")


class ValidationErrorMessage(BaseModel):
    """The body of a 422: a sentence to show, and each refused input when the request's shape was wrong."""

    detail: str = Field(description="every problem in one sentence, fit to show as it is")
    errors: list[FieldError] = Field(
        default_factory=list,
        description="each refused input (empty when the values fit but the request cannot be done)",
    )


BAD_JSON = "The request body is not valid JSON"


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI documentation of the refusals an endpoint can answer with."""
    descriptions = {
        400: "Bad input (e.g. a body that is not valid JSON)",
        401: "Missing, invalid or expired token",
        403: "Not allowed for this role",
        404: "Not found, or not visible to you",
        409: "Conflicts with the current state",
        422: "Invalid input",
        429: "Too many attempts",
        503: "A service this request needs is unavailable; try again shortly",
    }
    return {
        code: {"model": ValidationErrorMessage if code == 422 else ErrorMessage, "description": descriptions[code]}
        for code in codes
    }


async def _crm_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CrmError)
    body: dict[str, Any] = {"detail": exc.detail}
    if exc.status_code == 422:
        body["errors"] = []  # the same shape as a refused request (see _validation_error_handler)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def _where(loc: Sequence[str | int]) -> str:
    # ("body", "email") -> "email"; ("query", "limit") -> "limit"; ("body",) -> "body"
    return ".".join(str(part) for part in loc[1:]) or (str(loc[0]) if loc else "request")


async def _validation_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = list(exc.errors())
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return JSONResponse({"detail": BAD_JSON}, status_code=400)
    errors = [
        FieldError(loc=list(problem.get("loc", ())), msg=str(problem.get("msg", "")), type=str(problem.get("type", "")))
        for problem in problems
    ]
    detail = "; ".join(f"{_where(error.loc)}: {error.msg}" for error in errors) or "Invalid input"
    body = ValidationErrorMessage(detail=detail, errors=errors)
    return JSONResponse(body.model_dump(), status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every :class:`CrmError` as JSON with its status, and refused input the same way.

    FastAPI's own refusal of a request's shape becomes ``{"detail": <sentence>, "errors":
    [...]}`` with 422 (the shape crm's own 422s have too), and a body that is not JSON a 400.
    """
    app.add_exception_handler(CrmError, _crm_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)

"""The OpenAPI schema as crm really answers: every refusal documented with its real body.

The web app's client is generated from this schema, so what FastAPI leaves out or gets
wrong is put right here, in one place, for every operation:

* 422 is ``{"detail": <sentence>, "errors": [...]}`` (see :mod:`crm.web.errors`), not
  FastAPI's default list, and is documented wherever input is validated;
* 400 where a JSON body is read (a body that is not JSON);
* 401 wherever credentials are needed, and 403 on every authenticated unsafe operation (a
  browser session's request without its CSRF token);
* refusals of a streaming operation are JSON, not the stream's media type.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from .errors import ErrorMessage, FieldError, ValidationErrorMessage

_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_UNSAFE = frozenset({"post", "put", "patch", "delete"})
_JSON = "application/json"
_STREAM = "text/event-stream"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json_response(description: str, model: type[BaseModel]) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _ref(model)}}}


VALIDATION = _json_response("Invalid input: a sentence, and each refused input", ValidationErrorMessage)
BAD_BODY = _json_response("The body is not valid JSON", ErrorMessage)
UNAUTHORIZED = _json_response("Missing, invalid or expired token or session", ErrorMessage)
CSRF = "a browser session's request without its X-CSRF-Token header"


def _fix_operation(method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    for status, response in responses.items():
        content = response.get("content") or {}
        if status[0] in "45" and _STREAM in content:
            # Refusals come before any event: they are JSON like every other one.
            content[_JSON] = content.pop(_STREAM)
    body = operation.get("requestBody", {}).get("content", {})
    if "422" in responses or _JSON in body:
        responses["422"] = VALIDATION
    if _JSON in body:
        responses.setdefault("400", BAD_BODY)
    if operation.get("security"):
        responses.setdefault("401", UNAUTHORIZED)
        if method in _UNSAFE:
            forbidden = responses.get("403")
            if forbidden is None:
                responses["403"] = _json_response(f"Refused: {CSRF}", ErrorMessage)
            else:
                forbidden["description"] = f"{forbidden['description']}; or {CSRF}"
    # Sorted by status, so the generated client (and its diff) stays stable.
    operation["responses"] = dict(sorted(responses.items()))


def _uses(schema: Any, name: str) -> bool:
    if isinstance(schema, dict):
        return schema.get("$ref") == f"#/components/schemas/{name}" or any(_uses(v, name) for v in schema.values())
    if isinstance(schema, list):
        return any(_uses(v, name) for v in schema)
    return False


def truthful(schema: dict[str, Any]) -> dict[str, Any]:
    """Put right, in place, what FastAPI's schema says about refusals; returns ``schema``."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorMessage, FieldError, ValidationErrorMessage):
        components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for item in schema.get("paths", {}).values():
        for method, operation in item.items():
            if method in _METHODS:
                _fix_operation(method, operation)
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in components and not _uses({k: v for k, v in schema.items() if k != "components"}, unused):
            rest = {k: v for k, v in components.items() if k != unused}
            if not _uses(rest, unused):
                del components[unused]
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) answer the put-right schema."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = truthful(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

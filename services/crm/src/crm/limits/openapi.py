"""The rate limits in the OpenAPI schema: every counted operation can answer 429."""

from __future__ import annotations

from typing import Any

from .middleware import counted

_METHODS = frozenset({"get", "put", "post", "delete", "patch"})
RETRY_AFTER = {
    "description": "whole seconds to wait before the next request",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
TOO_MANY = "Too many requests from you (or, without credentials, from your address); wait Retry-After seconds"


def document_rate_limits(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the 429 answer (an ``ErrorMessage`` with ``Retry-After``) to every counted operation, in place."""
    for path, item in schema.get("paths", {}).items():
        if not counted(path):
            continue
        for method, operation in item.items():
            if method not in _METHODS:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            known = responses.get("429")
            description = (
                TOO_MANY if known is None else f"{known['description']}; or {TOO_MANY[0].lower()}{TOO_MANY[1:]}"
            )
            responses["429"] = {
                "description": description,
                "headers": {"Retry-After": RETRY_AFTER},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorMessage"}}},
            }
            operation["responses"] = dict(sorted(responses.items()))
    return schema

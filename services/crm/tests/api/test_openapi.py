"""The OpenAPI schema the web app's client is generated from: what it says about refusals,
that crm answers that way, and that the committed web/openapi.json is the code's schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from crm.cli import openapi_document

from .conftest import Api

REPOSITORY = Path(__file__).resolve().parents[4]
COMMITTED = REPOSITORY / "web" / "openapi.json"
UNSAFE = ("post", "put", "patch", "delete")


def _operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]


def _schema_of(response: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = response["content"]["application/json"]["schema"]
    return schema


async def test_every_refusal_is_documented_with_its_real_body(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components
    assert components["ValidationErrorMessage"]["properties"]["detail"]["type"] == "string"
    assert components["ErrorMessage"]["required"] == ["detail"]
    for method, path, operation in _operations(schema):
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        if "422" in responses:
            assert _schema_of(responses["422"]) == {"$ref": "#/components/schemas/ValidationErrorMessage"}, where
        if "application/json" in operation.get("requestBody", {}).get("content", {}):
            assert _schema_of(responses["400"]) == {"$ref": "#/components/schemas/ErrorMessage"}, where
            assert "422" in responses, where
        if operation.get("security"):
            assert _schema_of(responses["401"]) == {"$ref": "#/components/schemas/ErrorMessage"}, where
            if method in UNSAFE:
                assert "X-CSRF-Token" in responses["403"]["description"], where
        for status, response in responses.items():
            if status == "204":
                assert "content" not in response, where
            elif status[0] in "45":
                assert list(response["content"]) == ["application/json"], where


async def test_the_event_stream_is_documented_as_text_event_stream(api: Api) -> None:
    operation = (await api.client.get("/openapi.json")).json()["paths"]["/api/events"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["text/event-stream"]
    assert {"401", "422", "503"} <= set(operation["responses"])
    assert {parameter["name"] for parameter in operation["parameters"]} == {"Last-Event-ID", "last_event_id"}
    assert operation["security"] == [{"HTTPBearer": []}, {"BrowserSession": []}]


async def test_a_body_that_is_not_json_is_a_400_and_a_wrong_one_a_422_with_a_sentence(api: Api) -> None:
    broken = await api.client.post(
        "/api/auth/login", content=b'{"email": "a@b.c", "password": ', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    assert broken.json() == {"detail": "The request body is not valid JSON"}
    wrong = await api.client.post("/api/auth/login", json={"email": "a@b.c", "pasword": "x"})
    assert wrong.status_code == 422
    body = wrong.json()
    assert isinstance(body["detail"], str)
    assert "password: Field required" in body["detail"]
    assert {"loc": ["body", "password"], "msg": "Field required", "type": "missing"} in body["errors"]


def test_python_m_crm_openapi_writes_the_apps_schema(tmp_path: Path) -> None:
    target = tmp_path / "openapi.json"
    done = subprocess.run(
        [sys.executable, "-m", "crm", "openapi", str(target)], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert done.stdout == ""
    assert str(target) in done.stderr
    assert json.loads(target.read_text()) == json.loads(openapi_document())
    printed = subprocess.run(
        [sys.executable, "-m", "crm", "openapi"], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert json.loads(printed.stdout)["info"]["title"] == "JGGL CRM"


def test_the_committed_web_openapi_json_is_the_codes_schema() -> None:
    # The web app's TypeScript client is generated from this file: it must not drift.
    assert COMMITTED.is_file(), "run: python -m crm openapi web/openapi.json"
    assert json.loads(COMMITTED.read_text()) == json.loads(openapi_document()), (
        "web/openapi.json is out of date: run `python -m crm openapi web/openapi.json` and regenerate the client"
    )

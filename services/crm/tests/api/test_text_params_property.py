"""Every text parameter of the API, in the query or the path, against crm served over HTTP:
whatever text (or bytes that are not text at all) a caller puts there, the answer is never
a 5xx, and a refusal is ``{"detail": <sentence>}``.

The parameters come from the app's own OpenAPI schema, so an endpoint added later is
covered without touching this file. Text is where user input turns into SQL ranges,
``tsquery`` expressions, cursors and dates; the values drawn mix arbitrary text and bytes
with the edges of those conversions: the last character before the surrogates (U+D7FF),
the last of all (U+10FFFF), operators of ``tsquery`` and ``LIKE``, NUL, very long text.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from crm.api import create_app
from crm.models import User
from jggl_common.db import create_engine, session_factory, session_scope
from jggl_common.testing import TEST_DATABASE_URL

from .conftest import api_settings
from .factories import create_contact, create_deal, create_message, create_user
from .running import serving

EXAMPLES_PER_PARAMETER = 30
METHODS = ("get", "post", "put", "patch", "delete")
EDGES = [
    "\ud7ff",
    "a\ud7ff",
    "Ив\ud7ff",
    "\U0010ffff",
    "z\U0010ffff\U0010ffff",
    "\uffff",
    "\ue000",
    "\ue001",
    "%",
    "_",
    "\\",
    "'",
    '"',
    ":*",
    "a:* & b",
    "!()|&<->",
    "\x00",
    "\x7f",
    " ",
    "",
    "0",
    "-1",
    "9" * 30,
    "ǅİßẞﬃ",
    "x" * 1200,
    "1970-01-01",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00+14:00",
    "null",
    "..",
    "a/b",
    "%00",
    "\t\n",
]
"""Text known to be hard on the conversions; drawn often, beside arbitrary text."""

BODIES: dict[str, dict[str, Any]] = {"SettingWrite": {"value": "1"}, "JobSwitch": {"enabled": True}}
"""A valid body for each operation with a text path parameter that requires one (by schema name),
so the path parameter reaches the endpoint rather than stopping at the body's validation."""

_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
VALUES = st.one_of(
    st.sampled_from(EDGES).map(str.encode),
    _text.map(str.encode),
    st.tuples(_text, st.sampled_from(EDGES)).map(lambda parts: "".join(parts).encode()),
    st.binary(max_size=40),
)
"""Raw bytes of a parameter: UTF-8 text mostly, sometimes bytes that are not UTF-8."""


def _is_text(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "string" or any(option.get("type") == "string" for option in schema.get("anyOf", ()))


def text_parameters(schema: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """``(method, path, where, name)`` of every text parameter in the query or the path."""
    return [
        (method, path, parameter["in"], parameter["name"])
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
        for parameter in operation.get("parameters", ())
        if parameter["in"] in ("query", "path") and _is_text(parameter.get("schema", {}))
    ]


def _filler(parameter: dict[str, Any], deal_id: int) -> str:
    """A valid value for a parameter that is not the one under test."""
    schema = parameter.get("schema", {})
    kinds = {schema.get("type"), *(option.get("type") for option in schema.get("anyOf", ()))}
    return str(deal_id) if "integer" in kinds else "a"


def _request(
    schema: dict[str, Any], method: str, path: str, where: str, name: str, raw: bytes, deal_id: int
) -> tuple[str, str, dict[str, Any] | None]:
    """The method, the URL (path and query) and the body of one request with ``raw`` as ``name``."""
    operation = schema["paths"][path][method]
    value = quote_from_bytes(raw, safe="")
    url, query = path, []
    for parameter in operation.get("parameters", ()):
        if parameter["in"] == "path":
            filled = value if parameter["name"] == name else _filler(parameter, deal_id)
            url = url.replace("{" + parameter["name"] + "}", filled)
        elif parameter["in"] == "query" and parameter["name"] == name and where == "query":
            query.append(f"{name}={value}")
        elif parameter["in"] == "query" and parameter.get("required"):
            query.append(f"{parameter['name']}={_filler(parameter, deal_id)}")
    body = None
    request_body = operation.get("requestBody")
    if request_body is not None and request_body.get("required"):
        reference = request_body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        assert reference in BODIES, f"{method.upper()} {path}: add a valid {reference} to BODIES"
        body = BODIES[reference]
    return method.upper(), url + ("?" + "&".join(query) if query else ""), body


async def _seed(schema: str) -> tuple[User, User, int]:
    engine = create_engine(TEST_DATABASE_URL, schema, pool_size=1)
    try:
        async with session_scope(session_factory(engine)) as session:
            admin = await create_user(session, role="admin")
            manager = await create_user(session)
            names = ["Иван Петров", "Ab\ud7ff", "\ud7ff\ud7ff", "z\U0010ffff", "Zoë \ue000", "%_\\"]
            contacts = [await create_contact(session, name=name) for name in names]
            deal = await create_deal(session, contact=contacts[0], assignee=manager, comment="a:* & b")
            for contact in contacts[1:]:
                await create_deal(session, contact=contact)
            await create_message(session, deal, text="привет \ud7ff")
        assert deal.id is not None
        return admin, manager, deal.id
    finally:
        await engine.dispose()


def _property(
    client: httpx.Client,
    schema: dict[str, Any],
    callers: dict[str, dict[str, str]],
    parameter: tuple[str, str, str, str],
    deal_id: int,
) -> Any:
    """The property for one parameter: any value of it, sent by an admin or a manager, is not a 5xx."""
    method, path, where, name = parameter

    @given(raw=VALUES, caller=st.sampled_from(sorted(callers)))
    @settings(
        max_examples=EXAMPLES_PER_PARAMETER,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def check(raw: bytes, caller: str) -> None:
        verb, url, body = _request(schema, method, path, where, name, raw, deal_id)
        response = client.request(verb, url, json=body, headers=callers[caller])
        seen = f"{caller}: {verb} {url[:300]} -> {response.status_code} {response.text[:200]}"
        assert response.status_code < 500, seen
        if response.status_code >= 400:
            assert isinstance(response.json()["detail"], str), seen

    return check


@pytest.mark.timeout(240)
def test_no_text_in_any_query_or_path_parameter_gets_a_server_error(crm_engine: AsyncEngine, pg_schema: str) -> None:
    admin, manager, deal_id = asyncio.run(_seed(pg_schema))
    app = create_app(api_settings(pg_schema, api_rate_per_minute=0, api_address_rate_per_minute=0))
    tokens = app.state.crm.tokens
    callers = {
        "admin": {"Authorization": f"Bearer {tokens.issue(admin.id, admin.password_hash)}"},
        "manager": {"Authorization": f"Bearer {tokens.issue(manager.id, manager.password_hash)}"},
    }
    failures: list[str] = []
    with serving(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        schema = client.get("/openapi.json").json()
        parameters = text_parameters(schema)
        assert len(parameters) >= 25, parameters
        assert ("get", "/api/contacts", "query", "q") in parameters

        for parameter in parameters:
            try:
                _property(client, schema, callers, parameter, deal_id)()
            except AssertionError as exc:
                failures.append(str(exc).splitlines()[0])
    assert not failures, f"{len(failures)} parameters fail:\n" + "\n".join(failures)


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_a_contact_search_ending_in_the_last_character_before_the_surrogates_finds_its_contacts(
    crm_engine: AsyncEngine, pg_schema: str, role: str
) -> None:
    admin, manager, _ = asyncio.run(_seed(pg_schema))
    app = create_app(api_settings(pg_schema))
    caller = admin if role == "admin" else manager
    assert caller.id is not None
    headers = {"Authorization": f"Bearer {app.state.crm.tokens.issue(caller.id, caller.password_hash)}"}
    with serving(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        found = {}
        for prefix in ("ab\ud7ff", "\ud7ff", "Z\U0010ffff", "z\U0010ffff\U0010ffff"):
            response = client.get("/api/contacts", params={"q": prefix}, headers=headers)
            assert response.status_code == 200, (prefix, response.text)
            found[prefix] = [item["name"] for item in response.json()["items"]]
        # A lone surrogate sent as UTF-8 bytes (which no text can hold) is not a server error either.
        broken = client.get("/api/contacts?q=ab%ED%A0%80", headers=headers)
        assert broken.status_code in (200, 422), broken.text
    assert found == {
        "ab\ud7ff": ["Ab\ud7ff"],
        "\ud7ff": ["\ud7ff\ud7ff"],
        "Z\U0010ffff": ["z\U0010ffff"],
        "z\U0010ffff\U0010ffff": [],
    }


def test_the_parameters_come_from_the_schema_so_new_endpoints_are_covered() -> None:
    schema = {
        "paths": {
            "/api/things/{slug}": {
                "get": {
                    "parameters": [
                        {"in": "path", "name": "slug", "schema": {"type": "string"}},
                        {"in": "query", "name": "q", "schema": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
                        {"in": "query", "name": "limit", "schema": {"type": "integer"}},
                        {"in": "header", "name": "Last-Event-ID", "schema": {"type": "string"}},
                    ]
                }
            }
        }
    }
    assert text_parameters(json.loads(json.dumps(schema))) == [
        ("get", "/api/things/{slug}", "path", "slug"),
        ("get", "/api/things/{slug}", "query", "q"),
    ]

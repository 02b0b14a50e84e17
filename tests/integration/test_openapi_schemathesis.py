"""Property-based contract test: every operation in the app's OpenAPI schema,
fuzzed by schemathesis over real HTTP (uvicorn on loopback), with a valid key.

Checks on every response:
- no 5xx (`not_a_server_error`), also on the SSE route;
- the body conforms to the documented schema for its status
  (`response_schema_conformance`);
- the status is documented for the operation, or else it is a 4xx whose body is
  the JSON error shape (`documented_status_or_error_shape`);
- every 4xx/5xx body is `{"error": {"code", "message", "request_id", "details"?}}`
  (`error_body_shape`); event streams are exempt from the JSON checks.

Bounded and deterministic: a fixed seed, derandomized generation, no example
database, `MAX_EXAMPLES` fuzzed cases per operation (plus the schema's examples
and schemathesis' coverage cases).

Also: a hand-walked happy path (real ids, so the 200/204 bodies of the {id}
routes are validated too); a walk of every path without a key (or with a wrong
one) expecting 401 in the error shape on every /api route; and two checks of the
schema itself: every documented error is the error shape, and auth (401, security
schemes) and malformed JSON (400) are documented.

Works with schemathesis 4.15.2 (the newest that resolves with langgraph-api's
jsonschema-rs<0.45) and with 4.32.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from agent_server.api.app import create_app
from tests.conftest import make_settings
from tests.support.servers import serve_in_thread

API_KEY = "schemathesis-contract-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MAX_EXAMPLES = 25
SEED = 20240601
REQUEST_TIMEOUT = 20.0
HTTP_METHODS = {"get", "post", "put", "patch", "delete"}

# "METHOD path" -> statuses seen; printed after the module (run with -s to see it).
_seen: dict[str, Counter[int]] = {}


# --- custom checks -----------------------------------------------------------


def _content_type(response: Response) -> str:
    values = response.headers.get("content-type") or [""]
    return values[0].split(";", 1)[0].strip().lower()


def _is_event_stream(response: Response) -> bool:
    return _content_type(response) == "text/event-stream"


def error_shape_problem(body: Any) -> str | None:
    """Why `body` is not `{"error": {"code": str, "message": str, "request_id": str|None,
    "details"?: any}}`, or None when it is."""
    if not isinstance(body, dict) or set(body) != {"error"}:
        return f"top level must be exactly {{'error': ...}}, got {body!r:.300}"
    error = body["error"]
    if not isinstance(error, dict):
        return f"'error' must be an object, got {error!r:.300}"
    keys = set(error)
    missing = {"code", "message", "request_id"} - keys
    extra = keys - {"code", "message", "request_id", "details"}
    if missing or extra:
        return f"'error' keys: missing {sorted(missing)}, unexpected {sorted(extra)}"
    if not isinstance(error["code"], str) or not error["code"]:
        return f"'error.code' must be a non-empty string, got {error['code']!r}"
    if not isinstance(error["message"], str):
        return f"'error.message' must be a string, got {error['message']!r}"
    if error["request_id"] is not None and not isinstance(error["request_id"], str):
        return f"'error.request_id' must be a string or null, got {error['request_id']!r}"
    return None


def _json_error_problem(response: Response) -> str | None:
    if _content_type(response) != "application/json":
        return f"error response has Content-Type {_content_type(response)!r}, not application/json"
    try:
        body = json.loads(response.content)
    except ValueError:
        return f"error response body is not JSON: {response.content[:300]!r}"
    return error_shape_problem(body)


PROTOCOL_REJECTION = b"Invalid HTTP request received."
"""uvicorn's own plain-text 400 for requests its HTTP parser refuses (e.g. non-Latin-1
bytes in a header value): the request never reaches the app, so our shape can't apply."""


def _rejected_by_server(response: Response) -> bool:
    return response.status_code == 400 and response.content.strip() == PROTOCOL_REJECTION


def error_body_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx/5xx answer the app produces carries the one JSON error shape."""
    if response.status_code < 400 or _is_event_stream(response) or _rejected_by_server(response):
        return None
    problem = _json_error_problem(response)
    assert problem is None, (
        f"{case.operation.label} -> {response.status_code}: error body shape: {problem}"
    )
    return None


def documented_status_or_error_shape(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """The status is documented for the operation, or it is a 4xx in the error shape
    (e.g. 400 malformed_json, 405, 413, 415 that FastAPI does not list)."""
    status = response.status_code
    if _rejected_by_server(response):
        return None
    documented = {str(code) for code in case.operation.definition.raw.get("responses", {})}
    if str(status) in documented or f"{status // 100}XX" in documented or "default" in documented:
        return None
    assert 400 <= status < 500, (
        f"{case.operation.label} -> undocumented non-4xx status {status} "
        f"(documented: {sorted(documented)})"
    )
    problem = _json_error_problem(response)
    assert problem is None, (
        f"{case.operation.label} -> undocumented {status} without the error shape: {problem}"
    )
    return None


CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    documented_status_or_error_shape,
    error_body_shape,
]


# --- schema and server --------------------------------------------------------


def _contract_settings(tmp_path: Path, **overrides: object):
    values: dict[str, object] = {
        "agent_api_keys": [API_KEY],
        "rate_limit_per_minute": 100_000,
        "daily_token_budget": None,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


# The schema comes from `app.openapi()`, which needs no running app (nothing under
# this path is ever opened); requests go to a real server started per module.
# (`schemathesis.pytest.from_fixture` would load it from the live server, but its
# lazy loader sets `Function._nodeid`, which pytest 9.2 no longer has.)
_SCHEMA_ONLY_DIR = Path(tempfile.gettempdir()) / "agent-server-openapi-schema-only"
OPENAPI = create_app(_contract_settings(_SCHEMA_ONLY_DIR)).openapi()
OPERATIONS = {
    f"{method.upper()} {path}"
    for path, item in OPENAPI["paths"].items()
    for method in item
    if method in HTTP_METHODS
}

schema = schemathesis.openapi.from_dict(
    OPENAPI,
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": AUTH,
            "request-timeout": REQUEST_TIMEOUT,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                "no-shrink": True,
            },
            "phases": {"stateful": {"enabled": False}},
        }
    ),
)


@pytest.fixture(scope="module")
def contract_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path = tmp_path_factory.mktemp("openapi-contract")
    _seen.clear()
    with serve_in_thread(create_app(_contract_settings(tmp_path))) as url:
        served = httpx.get(f"{url}/openapi.json", timeout=REQUEST_TIMEOUT)
        assert served.status_code == 200
        assert served.json() == OPENAPI, "served /openapi.json differs from app.openapi()"
        yield url
    total = sum(sum(c.values()) for c in _seen.values())
    print(f"\nschemathesis: {total} cases over {len(_seen)} operations")
    for label in sorted(_seen):
        print(f"  {label}: {dict(sorted(_seen[label].items()))}")


@schema.parametrize()
def test_openapi_contract(case: Case, contract_url: str) -> None:
    response = case.call(base_url=contract_url, headers=AUTH, timeout=REQUEST_TIMEOUT)
    _seen.setdefault(case.operation.label, Counter())[response.status_code] += 1
    case.validate_response(
        response, checks=CHECKS, headers=AUTH, transport_kwargs={"base_url": contract_url}
    )


def _explicit(contract_url: str, path: str, method: str, **data: Any) -> httpx.Response:
    """Send one hand-made case and run the same checks on it; return its response.

    Sent with httpx, which reads an event stream to its end (the server closes it
    after `done`); schemathesis' own transport may stop after a capped number of events.
    """
    case = schema[path][method].Case(**data)
    response = httpx.request(
        method,
        f"{contract_url}{case.formatted_path}",
        json=data.get("body"),
        headers=AUTH,
        timeout=REQUEST_TIMEOUT,
    )
    case.validate_response(
        response, checks=CHECKS, headers=AUTH, transport_kwargs={"base_url": contract_url}
    )
    label = f"{method} {path}"
    _seen.setdefault(f"{label} (explicit)", Counter())[response.status_code] += 1
    return response


def test_success_paths_conform(contract_url: str) -> None:
    """Random ids only ever reach 404 on the {id} routes: walk the happy path by hand
    (session -> message -> stream -> history -> delete; document -> get -> delete) so
    the 200/201/204 bodies with real data are validated against the schema too."""
    created = _explicit(contract_url, "/api/chat/session", "POST", body={"title": "contract"})
    assert created.status_code == 201
    session_id = json.loads(created.content)["session_id"]
    message = {"message": "hello", "session_id": session_id}
    assert _explicit(contract_url, "/api/chat/message", "POST", body=message).status_code == 200
    stream = _explicit(contract_url, "/api/chat/message/stream", "POST", body=message)
    assert stream.status_code == 200
    assert b"event: done" in stream.content, stream.content[-500:]
    history = _explicit(
        contract_url,
        "/api/chat/history/{session_id}",
        "GET",
        path_parameters={"session_id": session_id},
    )
    assert history.status_code == 200
    assert len(json.loads(history.content)["turns"]) == 2
    assert _explicit(contract_url, "/api/chat/sessions", "GET").status_code == 200

    doc = {"title": "t", "content": "contract content", "metadata": {"k": [1, "v", None]}}
    added = _explicit(contract_url, "/api/documents", "POST", body=doc)
    assert added.status_code == 201
    doc_id = {"document_id": json.loads(added.content)["id"]}
    detail = _explicit(contract_url, "/api/documents/{document_id}", "GET", path_parameters=doc_id)
    assert detail.status_code == 200
    assert json.loads(detail.content)["content"] == doc["content"]
    for path, params in (
        ("/api/documents/{document_id}", doc_id),
        ("/api/chat/session/{session_id}", {"session_id": session_id}),
    ):
        deleted = _explicit(contract_url, path, "DELETE", path_parameters=params)
        assert deleted.status_code == 204
        again = _explicit(contract_url, path, "DELETE", path_parameters=params)
        assert again.status_code == 404


def test_schema_covers_every_route() -> None:
    """The contract test above is generated from this list: make sure it is all of them."""
    assert {
        "POST /api/chat/session",
        "POST /api/chat/message",
        "POST /api/chat/message/stream",
        "GET /api/chat/history/{session_id}",
        "GET /api/chat/sessions",
        "DELETE /api/chat/session/{session_id}",
        "POST /api/documents",
        "GET /api/documents",
        "GET /api/documents/{document_id}",
        "DELETE /api/documents/{document_id}",
        "GET /api/tools",
        "GET /api/models",
        "GET /healthz",
        "GET /readyz",
    } <= OPERATIONS


# --- no key: 401 everywhere under /api --------------------------------------


def _concrete(path: str) -> str:
    """Fill path templates with a placeholder id."""
    out = []
    for part in path.split("/"):
        out.append("nonexistent-id" if part.startswith("{") and part.endswith("}") else part)
    return "/".join(out)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key"}, {"X-API-Key": "wrong-key"}],
    ids=["no-key", "wrong-bearer", "wrong-x-api-key"],
)
def test_every_api_route_requires_a_key(tmp_path: Path, headers: dict[str, str]) -> None:
    app = create_app(_contract_settings(tmp_path))
    openapi = app.openapi()
    checked = 0
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as http:
        for path, item in openapi["paths"].items():
            for method in item:
                if method not in HTTP_METHODS:
                    continue
                kwargs: dict[str, Any] = {"headers": headers}
                if "requestBody" in item[method]:
                    kwargs["json"] = {"message": "hi", "title": "t", "content": "c"}
                response = http.request(method.upper(), _concrete(path), **kwargs)
                label = f"{method.upper()} {path}"
                if not path.startswith("/api/"):
                    assert response.status_code < 500, (label, response.status_code)
                    continue
                checked += 1
                assert response.status_code == 401, (label, response.status_code, response.text)
                assert response.headers["content-type"].startswith("application/json"), label
                problem = error_shape_problem(response.json())
                assert problem is None, (label, problem)
                assert response.json()["error"]["code"] == "unauthorized", label
                assert response.headers.get("www-authenticate") == "Bearer", label
                assert response.json()["error"]["request_id"], label
    assert checked >= 12, f"only {checked} /api operations found in the schema"


# --- the checker itself, and the documentation gaps it cannot see ------------


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        ({"error": {"code": "x", "message": "m", "request_id": "r"}}, True),
        ({"error": {"code": "x", "message": "m", "request_id": None, "details": [1]}}, True),
        ({"detail": [{"loc": ["body"], "msg": "m"}]}, False),
        ({"error": {"code": "x", "message": "m"}}, False),
        ({"error": {"code": "", "message": "m", "request_id": None}}, False),
        ({"error": {"code": "x", "message": 1, "request_id": None}}, False),
        ({"error": {"code": "x", "message": "m", "request_id": 5}}, False),
        ({"error": {"code": "x", "message": "m", "request_id": None, "trace": "..."}}, False),
        ({"error": "boom"}, False),
        ("Internal Server Error", False),
    ],
)
def test_error_shape_checker(body: Any, ok: bool) -> None:
    assert (error_shape_problem(body) is None) is ok


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in OPENAPI["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield f"{method.upper()} {path}", path, operation


def test_documented_error_bodies_are_the_error_shape() -> None:
    wrong = []
    for label, path, operation in _operations():
        for status, response in operation["responses"].items():
            if not status.startswith(("4", "5")) or path == "/readyz":
                continue  # /readyz documents its 503 as Readiness on purpose
            ref = response.get("content", {}).get("application/json", {}).get("schema", {})
            if ref.get("$ref") != "#/components/schemas/ErrorResponse":
                wrong.append(f"{label} {status}: {ref}")
    assert not wrong, "\n".join(wrong)


def test_auth_and_malformed_json_are_documented() -> None:
    assert OPENAPI.get("components", {}).get("securitySchemes"), "no securitySchemes"
    missing = []
    for label, path, operation in _operations():
        if path.startswith("/api/") and "401" not in operation["responses"]:
            missing.append(f"{label}: 401")
        if "requestBody" in operation and "400" not in operation["responses"]:
            missing.append(f"{label}: 400")
    assert not missing, "\n".join(missing)

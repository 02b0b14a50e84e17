"""HTTP method semantics over real uvicorn: 405 `Allow`, HEAD, and auth before body parsing.

- A 405's `Allow` names the methods of *every* route on the path (Starlette names
  only the first route it tried), plus HEAD wherever GET is served.
- HEAD works on every GET route (FastAPI's `APIRoute` doesn't add it): same status
  and headers as GET, no body; uvicorn drops the body, so this must go through it.
- Malformed JSON from a caller without a valid key is 401, not 400: FastAPI parses
  the body before it runs the auth dependency.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import ALICE, BOB, auth

MALFORMED = b'{"message": "hi",'
JSON = {"Content-Type": "application/json"}


def allow(response: httpx.Response) -> list[str]:
    return [m.strip() for m in response.headers["allow"].split(",")]


def assert_error_shape(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


# --- 405: Allow is the union over every route of the path ----------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # GET and DELETE are two routes on one path: both, plus HEAD for GET.
        ("/api/documents/some-id", ["DELETE", "GET", "HEAD"]),
        ("/api/documents", ["GET", "HEAD", "POST"]),
        # Only DELETE lives on this path (history is /api/chat/history/{id}).
        ("/api/chat/session/some-id", ["DELETE"]),
        ("/api/chat/message", ["POST"]),
        ("/healthz", ["GET", "HEAD"]),
    ],
)
async def test_405_allow_lists_every_route_of_the_path(
    client: httpx.AsyncClient, path: str, expected: list[str]
) -> None:
    r = await client.put(path, json={})
    assert_error_shape(r, 405, "method_not_allowed")
    assert allow(r) == expected  # sorted, comma-separated, no duplicates
    assert r.headers["x-content-type-options"] == "nosniff"  # security headers still on


async def test_405_on_several_methods_gives_the_same_allow(client: httpx.AsyncClient) -> None:
    """Whichever route Starlette happened to try first, the answer is the same."""
    answers = {
        method: await client.request(method, "/api/documents/some-id")
        for method in ("PUT", "PATCH", "POST")
    }
    for method, r in answers.items():
        assert_error_shape(r, 405, "method_not_allowed")
        assert allow(r) == ["DELETE", "GET", "HEAD"], method


async def test_405_on_keyed_server_still_lists_methods(keyed: httpx.AsyncClient) -> None:
    """Routing answers 405 before auth runs: no key needed to learn the methods."""
    r = await keyed.put("/api/documents/some-id", json={})
    assert_error_shape(r, 405, "method_not_allowed")
    assert allow(r) == ["DELETE", "GET", "HEAD"]


# --- HEAD ------------------------------------------------------------------------


async def test_head_healthz_matches_get_without_body(client: httpx.AsyncClient) -> None:
    get = await client.get("/healthz")
    head = await client.head("/healthz")
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"] != "0"
    assert head.headers["x-request-id"]
    assert head.headers["x-content-type-options"] == "nosniff"


async def test_head_is_seen_as_head_outside_the_app(client: httpx.AsyncClient) -> None:
    """The access log / metrics sit outside the HEAD→GET rewrite: they count a HEAD,
    labelled with the matched route (not `unmatched`)."""
    for _ in range(2):
        assert (await client.head("/healthz")).status_code == 200
    metrics = (await client.get("/metrics")).text
    assert 'agent_http_requests_total{method="HEAD",route="/healthz",status="200"} 2.0' in metrics


async def test_head_on_post_only_route_is_405(client: httpx.AsyncClient) -> None:
    r = await client.head("/api/chat/message")
    assert r.status_code == 405
    assert r.content == b""
    assert "POST" in allow(r)
    assert allow(r) == ["POST"]
    assert r.headers["content-type"].startswith("application/json")


async def test_head_on_authenticated_get_route(keyed: httpx.AsyncClient) -> None:
    get = await keyed.get("/api/tools", headers=auth(ALICE))
    head = await keyed.head("/api/tools", headers=auth(ALICE))
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "headers",
    [{}, auth("wrong-key"), {"X-API-Key": "wrong-key"}],
    ids=["no-key", "wrong-bearer", "wrong-x-api-key"],
)
@pytest.mark.parametrize("path", ["/api/tools", "/api/chat/history/some-id", "/api/documents/x"])
async def test_head_without_valid_key_is_401(
    keyed: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    r = await keyed.head(path, headers=headers)
    assert r.status_code == 401
    assert r.content == b""
    assert r.headers["www-authenticate"] == "Bearer"


async def test_head_on_unknown_session_is_404(keyed: httpx.AsyncClient) -> None:
    r = await keyed.head("/api/chat/history/no-such-session", headers=auth(ALICE))
    assert r.status_code == 404
    assert r.content == b""


async def test_openapi_has_no_head_operations(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert paths
    heads = [path for path, item in paths.items() if "head" in item]
    assert heads == []
    assert "get" in paths["/healthz"]


# --- malformed JSON: auth first -----------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/chat/message", "/api/chat/message/stream", "/api/documents"]
)
@pytest.mark.parametrize(
    "headers",
    [{}, auth("wrong-key"), {"X-API-Key": "wrong-key"}],
    ids=["no-key", "wrong-bearer", "wrong-x-api-key"],
)
async def test_malformed_json_without_valid_key_is_401(
    keyed: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    r = await keyed.post(path, content=MALFORMED, headers={**JSON, **headers})
    assert_error_shape(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("headers", [auth(ALICE), {"X-API-Key": BOB}], ids=["bearer", "x-api-key"])
async def test_malformed_json_with_valid_key_is_400(
    keyed: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    r = await keyed.post("/api/chat/message", content=MALFORMED, headers={**JSON, **headers})
    assert_error_shape(r, 400, "malformed_json")


async def test_malformed_json_on_open_server_is_400(client: httpx.AsyncClient) -> None:
    """No keys configured (loopback): everyone is the local principal, so 400."""
    r = await client.post("/api/chat/message", content=MALFORMED, headers=JSON)
    assert_error_shape(r, 400, "malformed_json")


async def test_schema_errors_still_come_after_auth(keyed: httpx.AsyncClient) -> None:
    no_key = await keyed.post("/api/chat/message", json={"message": 5})
    assert_error_shape(no_key, 401, "unauthorized")
    keyed_422 = await keyed.post("/api/chat/message", json={"message": 5}, headers=auth(ALICE))
    assert keyed_422.status_code == 422
    assert keyed_422.json()["error"]["code"] == "validation_error"

"""CORS as the hosted Studio page (https://smith.langchain.com) needs it against a local
server, incl. Chrome's Private Network Access preflight (AGENT-PROTOCOL.md §6). Our
target runs with `CORS_ORIGINS` set to Studio's origin; the reference allows `*`."""

from __future__ import annotations

import httpx

from tests.agent_protocol.conftest import STUDIO_ORIGIN, Target, reference_wrong

STUDIO_HEADERS = "x-api-key,content-type,x-auth-scheme,last-event-id"


def preflight_headers(method: str, *, private_network: bool) -> dict[str, str]:
    headers = {
        "Origin": STUDIO_ORIGIN,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": STUDIO_HEADERS,
    }
    if private_network:
        headers["Access-Control-Request-Private-Network"] = "true"
    return headers


def allowed(value: str) -> set[str]:
    return {part.strip().lower() for part in value.split(",") if part.strip()}


async def test_preflight_for_studio_headers_and_methods(target: Target) -> None:
    async with httpx.AsyncClient(base_url=target.url) as raw:
        for method, path in (
            ("POST", "/threads/search"),
            ("PATCH", "/threads/00000000-0000-4000-8000-000000000000"),
            ("GET", "/threads/00000000-0000-4000-8000-000000000000/runs/x/stream"),
            ("DELETE", "/threads/00000000-0000-4000-8000-000000000000"),
        ):
            answer = await raw.options(
                path, headers=preflight_headers(method, private_network=False)
            )
            assert 200 <= answer.status_code < 300, (method, answer.status_code, answer.text)
            assert answer.headers["access-control-allow-origin"] in (STUDIO_ORIGIN, "*")
            methods = allowed(answer.headers["access-control-allow-methods"])
            assert method.lower() in methods or "*" in methods, methods
            headers = allowed(answer.headers["access-control-allow-headers"])
            assert set(STUDIO_HEADERS.split(",")) <= headers or "*" in headers, headers


@reference_wrong("the Private Network Access preflight is a 400 'Disallowed CORS private-network'")
async def test_private_network_access_preflight(target: Target) -> None:
    async with httpx.AsyncClient(base_url=target.url) as raw:
        answer = await raw.options(
            "/assistants/search", headers=preflight_headers("POST", private_network=True)
        )
    assert 200 <= answer.status_code < 300, (answer.status_code, answer.text)
    assert answer.headers.get("access-control-allow-private-network") == "true"
    assert answer.headers["access-control-allow-origin"] in (STUDIO_ORIGIN, "*")


async def test_responses_expose_content_location(target: Target) -> None:
    headers = {"Origin": STUDIO_ORIGIN, **target.headers}
    async with httpx.AsyncClient(base_url=target.url, headers=headers) as raw:
        answer = await raw.post("/threads/search", json={"limit": 1})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] in (STUDIO_ORIGIN, "*")
    exposed = allowed(answer.headers.get("access-control-expose-headers", ""))
    assert "content-location" in exposed, exposed

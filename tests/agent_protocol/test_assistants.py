"""`/info`, `/ok` and the assistant routes, as Studio, the SDKs and RemoteGraph call them."""

from __future__ import annotations

import contextlib
import json
import uuid

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import NotFoundError

from tests.agent_protocol.conftest import AGENT_ID, GRAPH_ID, Target, reference_wrong


async def test_info_reports_a_real_version_and_flags(client: LangGraphClient) -> None:
    info = await client.http.get("/info")
    assert info["flags"]["assistants"] is True
    # Studio gates on the version (Aegra raised its 0.1.0 to 0.4.35 for Studio).
    assert tuple(int(part) for part in info["version"].split(".")[:3]) >= (0, 4, 35)


async def test_ok(target: Target) -> None:
    async with httpx.AsyncClient(base_url=target.url) as raw:
        answer = await raw.get("/ok")
    assert answer.status_code == 200 and answer.json()["ok"] is True


async def test_search_finds_the_system_assistant(client: LangGraphClient) -> None:
    found = await client.assistants.search(metadata={"created_by": "system"})
    assert [a["assistant_id"] for a in found] == [AGENT_ID]
    assistant = found[0]
    assert assistant["graph_id"] == GRAPH_ID
    assert assistant["metadata"]["created_by"] == "system"
    for key in ("config", "version", "name", "created_at", "updated_at"):
        assert key in assistant, key
    assert [a["assistant_id"] for a in await client.assistants.search(graph_id=GRAPH_ID)] == [
        AGENT_ID
    ]
    # The reference answers 404 "Graph not found", ours an empty page.
    with contextlib.suppress(NotFoundError):
        assert await client.assistants.search(graph_id="no-such-graph") == []


async def test_search_with_a_text_plain_json_body_as_studio_sends_it(
    http: httpx.AsyncClient,
) -> None:
    body = json.dumps({"limit": 10, "offset": 0, "metadata": {"created_by": "system"}})
    answer = await http.post(
        "/assistants/search", content=body, headers={"Content-Type": "text/plain;charset=UTF-8"}
    )
    assert answer.status_code == 200, answer.text
    assert [a["assistant_id"] for a in answer.json()] == [AGENT_ID]


async def test_get_by_uuid(client: LangGraphClient) -> None:
    assistant = await client.assistants.get(AGENT_ID)
    assert assistant["assistant_id"] == AGENT_ID and assistant["graph_id"] == GRAPH_ID
    with pytest.raises(NotFoundError):
        await client.assistants.get(str(uuid.uuid4()))


@reference_wrong("GET /assistants/{graph_id} is 422 (UUID only), AGENT-PROTOCOL.md §9")
async def test_get_by_graph_id(client: LangGraphClient) -> None:
    assistant = await client.assistants.get(GRAPH_ID)
    assert assistant["assistant_id"] == AGENT_ID


@pytest.mark.parametrize("xray", [False, True, 1])
async def test_graph_has_the_agent_loop(client: LangGraphClient, xray: bool | int) -> None:
    for assistant in (AGENT_ID, GRAPH_ID):  # RemoteGraph asks by graph id
        drawn = await client.assistants.get_graph(assistant, xray=xray)
        ids = {node["id"] for node in drawn["nodes"]}
        assert {"__start__", "model", "tools", "persist"} <= ids, ids
        # RemoteGraph's _get_drawable_nodes reads id, type (optional) and data.
        assert all(isinstance(node["id"], str) for node in drawn["nodes"])
        edges = {(e["source"], e["target"]) for e in drawn["edges"]}
        assert ("tools", "model") in edges, edges


async def test_schemas(client: LangGraphClient) -> None:
    schemas = await client.assistants.get_schemas(AGENT_ID)
    assert schemas["graph_id"] == GRAPH_ID
    for key in ("input_schema", "output_schema", "state_schema", "config_schema"):
        assert key in schemas, key
    assert "messages" in schemas["state_schema"]["properties"]
    assert "messages" in schemas["input_schema"]["properties"]
    context = schemas.get("context_schema") or {}
    assert "model" in context.get("properties", {}), context


async def test_subgraphs_of_a_flat_graph_are_empty(client: LangGraphClient) -> None:
    assert await client.assistants.get_subgraphs(AGENT_ID) == {}
    assert await client.assistants.get_subgraphs(AGENT_ID, recurse=True) == {}


async def test_versions(client: LangGraphClient) -> None:
    versions = await client.assistants.get_versions(AGENT_ID)
    assert versions, versions
    assert all(v["assistant_id"] == AGENT_ID for v in versions)
    assert versions[0]["version"] >= 1

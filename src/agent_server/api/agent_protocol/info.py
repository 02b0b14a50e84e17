"""`GET /info` (what this server is and can do) and `GET /ok` (a liveness probe).

Studio reads `version` and `flags` (Aegra had to raise its reported version before
Studio would work with it, #39); Agent Chat UI only checks that `/info` answers.
`version` is the langgraph-api release whose wire format this surface follows
(`AGENT-PROTOCOL.md`, read from 0.16.7), `agent_server_version` our own.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter

from agent_server import __version__

PLATFORM_API_VERSION = "0.16.7"
"""The langgraph-api release whose routes and shapes we implement."""

router = APIRouter(tags=["agent protocol"])
probe = APIRouter(tags=["agent protocol"])
"""`/ok` is open like `/healthz`: load balancers and `langgraph dev`-style readiness
checks carry no key, and it tells nothing but "up"."""


def _langgraph_version() -> str | None:
    try:
        return version("langgraph")
    except PackageNotFoundError:  # pragma: no cover - langgraph is a dependency
        return None


@router.get("/info", response_model=None)
async def info() -> dict[str, Any]:
    return {
        "version": PLATFORM_API_VERSION,
        "agent_server_version": __version__,
        "langgraph_py_version": _langgraph_version(),
        "flags": {
            "assistants": True,
            "crons": False,
            "langsmith": False,
            "langsmith_tracing_replicas": False,
            "langsmith_tracing_session_on_runs": False,
        },
        "host": {"kind": "self-hosted", "project_id": None, "revision_id": None},
    }


@probe.get("/ok", response_model=None)
async def ok() -> dict[str, bool]:
    return {"ok": True}

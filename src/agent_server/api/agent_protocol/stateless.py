"""Stateless runs: `POST /runs`, `/runs/stream`, `/runs/wait` (RemoteGraph without a
thread id, `client.runs.wait(None, …)`).

The core runs them on a temporary thread, deleted when the run ends unless
`on_completion="keep"`; the run record stays readable, so the `Location` headers
name `/threads/{temporary}/runs/{run}` paths the SDKs can rejoin (the reference's
`/runs/{run}/stream` matches neither SDK's reconnect pattern).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse

from agent_server.api.agent_protocol.body import body_of
from agent_server.api.agent_protocol.runs import (
    Limited,
    json_response,
    run_of,
    run_path,
    run_request,
    sse_response,
)
from agent_server.api.agent_protocol.schemas import RunCreate
from agent_server.api.agent_protocol.surface import Surface
from agent_server.api.agent_protocol.wire import WireResponse
from agent_server.api.deps import Principal

router = APIRouter(tags=["agent protocol"], default_response_class=WireResponse)


@router.post("/runs", response_model=None, dependencies=Limited)
async def create(
    surface: Surface, principal: Principal, body: body_of(RunCreate), response: Response
) -> Any:
    record = await surface.runs.create(principal, None, run_request(surface, body))
    response.headers["Content-Location"] = run_path(record)
    return run_of(record)


@router.post(
    "/runs/stream", response_model=None, dependencies=Limited, response_class=EventSourceResponse
)
async def stream(
    request: Request, surface: Surface, principal: Principal, body: body_of(RunCreate)
) -> EventSourceResponse:
    record = await surface.runs.create(principal, None, run_request(surface, body))
    return sse_response(
        request,
        surface,
        principal,
        record,
        body.modes(),
        after=None,
        cancel_on_disconnect=body.on_disconnect == "cancel",
    )


@router.post("/runs/wait", response_model=None, dependencies=Limited)
async def wait(
    request: Request, surface: Surface, principal: Principal, body: body_of(RunCreate)
) -> StreamingResponse:
    record = await surface.runs.create(principal, None, run_request(surface, body, waited=True))
    return json_response(
        request, surface, principal, record, cancel_on_disconnect=body.on_disconnect == "cancel"
    )

"""Send a message: a whole answer, or a token stream over SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse

from agent_server.api.deps import Principal, Service, rate_limit
from agent_server.api.schemas import ChatRequest, ChatResponse, ErrorResponse
from agent_server.api.service import ChatService, PreparedTurn

router = APIRouter(prefix="/api/chat", tags=["messages"], dependencies=[Depends(rate_limit)])
ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
    429: {"model": ErrorResponse, "description": "Rate limit or token budget exceeded"},
    404: {"model": ErrorResponse, "description": "Unknown session"},
    409: {"model": ErrorResponse, "description": "Another message is running on the session"},
    502: {"model": ErrorResponse, "description": "The model provider rejected our credentials"},
    503: {"model": ErrorResponse, "description": "Every model failed"},
}


@router.post("/message", response_model=ChatResponse, responses=ERRORS)
async def send_message(
    body: ChatRequest, request: Request, service: Service, principal: Principal
) -> ChatResponse:
    turn = await service.start_turn(principal, body)
    request.state.session_id, request.state.run_id = turn.session.id, turn.turn_id
    return await service.run_turn(turn)


async def _events(
    service: ChatService, turn: PreparedTurn, shutdown: anyio.Event
) -> AsyncIterator[dict[str, str]]:
    async for event in service.stream_turn(turn, shutdown=shutdown):
        yield event.encode()


@router.post(
    "/message/stream",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Events: metadata, message, tool_start, tool_end, fallback, reset, "
            "done, error",
        },
        **ERRORS,
    },
    response_class=EventSourceResponse,
)
async def stream_message(
    body: ChatRequest, request: Request, service: Service, principal: Principal
) -> EventSourceResponse:
    turn = await service.start_turn(principal, body)
    request.state.session_id, request.state.run_id = turn.session.id, turn.turn_id
    shutdown = anyio.Event()
    return EventSourceResponse(
        _events(service, turn, shutdown),
        ping=service.settings.sse_ping_seconds,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        shutdown_event=shutdown,
        # Leave the generator time to send its `shutting_down` farewell.
        shutdown_grace_period=service.settings.shutdown_grace_seconds + 1,
    )

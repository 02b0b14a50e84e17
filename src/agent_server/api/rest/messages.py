"""Send a message (a whole answer, or a token stream over SSE), and answer a turn that
paused for a person's approval of its tool calls (the same two shapes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Request, Response
from sse_starlette import EventSourceResponse

from agent_server.api.deps import Principal, Service, rate_limit
from agent_server.api.rest.events import to_sse
from agent_server.api.rest.schemas import (
    ApprovalRequest,
    ChatRequest,
    ChatResponse,
    ErrorResponse,
)
from agent_server.runs.turns import PreparedTurn, TurnRequest, Turns

router = APIRouter(prefix="/api/chat", tags=["messages"], dependencies=[Depends(rate_limit)])
ERRORS = {
    401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
    429: {"model": ErrorResponse, "description": "Rate limit or token budget exceeded"},
    404: {"model": ErrorResponse, "description": "Unknown session"},
    409: {
        "model": ErrorResponse,
        "description": "Another message is running on the session (`session_busy`), the "
        "request with this Idempotency-Key is (`request_in_progress`), the session waits for "
        "approval of tool calls (`approval_pending`) or, for decisions, does not "
        "(`not_awaiting_approval`)",
    },
    422: {
        "model": ErrorResponse,
        "description": "Invalid request (`validation_error`, `invalid_model`, `invalid_tools`), "
        "an Idempotency-Key reused with another body (`idempotency_key_reused`), or "
        "decisions that do not fit the pending calls (`invalid_decisions`: the turn stays "
        "paused)",
    },
    502: {"model": ErrorResponse, "description": "The model provider rejected our credentials"},
    503: {
        "model": ErrorResponse,
        "description": "Every model failed (`upstream_unavailable`), a store is unreachable "
        "(`store_unavailable`) or the server is shutting down (`shutting_down`)",
    },
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Makes a retry safe: the same key (same caller, same session) answers "
        "with the stored turn instead of running it again; 422 if the body differs, 409 "
        "while the first request runs. Printable ASCII, 1-255 characters.",
    ),
]
REPLAYED_HEADER = "Idempotent-Replayed"
"""`true` on a response that is the stored answer of an earlier request with the key."""


async def _shutdown_signal(shutdown: anyio.Event) -> None:
    """Set `shutdown` when the server starts shutting down (SIGTERM), through
    sse-starlette's watcher: the one the streams use, so both routes see the same
    signal from uvicorn, however it was started."""
    await EventSourceResponse._listen_for_exit_signal()
    shutdown.set()


@router.post("/message", response_model=ChatResponse, responses=ERRORS)
async def send_message(
    body: ChatRequest,
    request: Request,
    response: Response,
    service: Service,
    principal: Principal,
    idempotency_key: IdempotencyKey = None,
) -> ChatResponse:
    turn = await service.start_turn(principal, turn_request(body), idempotency_key=idempotency_key)
    request.state.session_id, request.state.run_id = turn.session.id, turn.turn_id
    if turn.replay is not None:
        response.headers[REPLAYED_HEADER] = "true"
        return ChatResponse.model_validate(turn.replay)
    return await _answer(service, turn)


async def _answer(service: Turns, turn: PreparedTurn) -> ChatResponse:
    shutdown = anyio.Event()
    # A bare task, not a task group: a task group would wrap the turn's errors
    # (404, 503…) in an ExceptionGroup that the error handlers do not unwrap.
    watcher = asyncio.create_task(_shutdown_signal(shutdown))
    try:
        return ChatResponse.model_validate(await service.run_turn(turn, shutdown=shutdown))
    finally:
        watcher.cancel()


@router.post("/session/{session_id}/approval", response_model=ChatResponse, responses=ERRORS)
async def decide(
    session_id: str,
    body: ApprovalRequest,
    request: Request,
    service: Service,
    principal: Principal,
) -> ChatResponse:
    """Resume a turn that paused for approval: one decision per pending tool call."""
    turn = await service.start_approval(principal, session_id, body.resume())
    request.state.session_id, request.state.run_id = turn.session.id, turn.turn_id
    return await _answer(service, turn)


def turn_request(body: ChatRequest) -> TurnRequest:
    return TurnRequest(**body.model_dump())


async def _events(
    service: Turns, turn: PreparedTurn, shutdown: anyio.Event
) -> AsyncIterator[dict[str, str]]:
    async for event in service.stream_turn(turn, shutdown=shutdown):
        if (sse := to_sse(event)) is not None:
            yield sse.encode()


@router.post(
    "/message/stream",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Events: metadata, message, tool_start, tool_end, fallback, reset, "
            "approval_required, done, error",
        },
        **ERRORS,
    },
    response_class=EventSourceResponse,
)
async def stream_message(
    body: ChatRequest,
    request: Request,
    service: Service,
    principal: Principal,
    idempotency_key: IdempotencyKey = None,
) -> EventSourceResponse:
    turn = await service.start_turn(principal, turn_request(body), idempotency_key=idempotency_key)
    request.state.session_id, request.state.run_id = turn.session.id, turn.turn_id
    return _event_stream(service, turn)


@router.post(
    "/session/{session_id}/approval/stream",
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "The resumed turn's events, as /message/stream sends them",
        },
        **ERRORS,
    },
    response_class=EventSourceResponse,
)
async def decide_stream(
    session_id: str,
    body: ApprovalRequest,
    request: Request,
    service: Service,
    principal: Principal,
) -> EventSourceResponse:
    turn = await service.start_approval(principal, session_id, body.resume())
    request.state.session_id, request.state.run_id = turn.session.id, turn.turn_id
    return _event_stream(service, turn)


def _event_stream(service: Turns, turn: PreparedTurn) -> EventSourceResponse:
    shutdown = anyio.Event()
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if turn.replay is not None:
        headers[REPLAYED_HEADER] = "true"
    return EventSourceResponse(
        _events(service, turn, shutdown),
        ping=service.settings.sse_ping_seconds,
        headers=headers,
        shutdown_event=shutdown,
        # Leave the generator time to send its `shutting_down` farewell.
        shutdown_grace_period=service.settings.shutdown_grace_seconds + 1,
    )

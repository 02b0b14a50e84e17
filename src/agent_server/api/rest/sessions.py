"""Sessions: create, list, delete, and read a session's history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Response, status

from agent_server.api.deps import Offset, Principal, Service
from agent_server.api.rest.schemas import (
    ErrorResponse,
    HistoryOut,
    SessionCreate,
    SessionList,
    SessionOut,
    TurnOut,
)
from agent_server.persistence.repository import SessionInfo, TurnRecord
from agent_server.runs.turns import Turns

router = APIRouter(prefix="/api/chat", tags=["sessions"])
NOT_FOUND = {404: {"model": ErrorResponse, "description": "No such session for this caller"}}


def session_out(service: Turns, session: SessionInfo) -> SessionOut:
    return SessionOut(
        session_id=session.id,
        title=session.title,
        created_at=session.created_at,
        last_active_at=session.last_active_at,
        expires_at=service.expires_at(session),
        turn_count=session.turn_count,
    )


def turn_out(turn: TurnRecord) -> TurnOut:
    return TurnOut(
        turn_id=turn.turn_id,
        user_message=turn.user_message,
        response=turn.assistant_message,
        tools_used=turn.tools_used,
        model_used=turn.model_used,
        fallbacks=turn.fallbacks,  # type: ignore[arg-type]
        usage={
            "input_tokens": turn.input_tokens,
            "output_tokens": turn.output_tokens,
            "total_tokens": turn.input_tokens + turn.output_tokens,
        },  # type: ignore[arg-type]
        cost_usd=turn.cost_usd,
        latency_ms=turn.latency_ms,
        degraded=turn.degraded,
        created_at=turn.created_at,
        approvals=turn.metadata.get("approvals") or [],  # type: ignore[arg-type]
    )


@router.post("/session", status_code=status.HTTP_201_CREATED, response_model=SessionOut)
async def create_session(
    service: Service,
    principal: Principal,
    body: Annotated[SessionCreate | None, Body()] = None,
) -> SessionOut:
    session = await service.create_session(principal, body.title if body else None)
    return session_out(service, session)


@router.get("/sessions", response_model=SessionList)
async def list_sessions(
    service: Service,
    principal: Principal,
    limit: int = Query(50, ge=1, le=200),
    offset: Offset = 0,
) -> SessionList:
    sessions = await service.list_sessions(principal, limit=limit, offset=offset)
    return SessionList(
        sessions=[session_out(service, s) for s in sessions], limit=limit, offset=offset
    )


@router.delete(
    "/session/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=NOT_FOUND,
)
async def delete_session(session_id: str, service: Service, principal: Principal) -> Response:
    await service.delete_session(principal, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/history/{session_id}", response_model=HistoryOut, responses=NOT_FOUND)
async def history(
    session_id: str,
    service: Service,
    principal: Principal,
    limit: int = Query(100, ge=1, le=500),
    offset: Offset = 0,
) -> HistoryOut:
    session, turns = await service.history(principal, session_id, limit=limit, offset=offset)
    return HistoryOut(
        session_id=session.id,
        title=session.title,
        created_at=session.created_at,
        expires_at=service.expires_at(session),
        turns=[turn_out(t) for t in turns],
        limit=limit,
        offset=offset,
    )

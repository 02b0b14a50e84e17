"""Run routes on a thread: create (background), stream, wait, list, get, join, cancel.

Each route parses the body (`RunCreate`), makes one call into the run core
(`runs.runs.Runs`) and shapes its answer:

- streams are Server-Sent Events built by `events.frames` from the core's run
  events, with heartbeats at a steady interval (`SSE_PING_SECONDS`; the JS SDK
  derives its idle timeout from their spacing), an `id:` on every event (so a
  reconnect with `Last-Event-ID` resumes exactly), and the headers both SDKs
  read: `Location` (where to rejoin) and `Content-Location` (the run), both
  relative to the API base (`AGENT-PROTOCOL.md` §2);
- `/wait`, `/join` and `cancel?wait=1` answer JSON (the final values, with
  `__interrupt__` or `__error__`), kept alive with a newline every few seconds
  (leading whitespace is valid JSON), as the reference does behind proxies;
- `on_disconnect="cancel"` (or `cancel_on_disconnect=1` on a join) cancels the
  run when the client goes away; the default `continue` lets it finish.

Refusals (409 `thread_busy` for `reject`, 404, 400/422) happen before a response
starts, so they keep their status and our error shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from redis.exceptions import RedisError
from sse_starlette import EventSourceResponse, ServerSentEvent

from agent_server.api.agent_protocol.body import body_of
from agent_server.api.agent_protocol.events import frame, frames, graph_modes
from agent_server.api.agent_protocol.schemas import RunCreate
from agent_server.api.agent_protocol.surface import AgentProtocol, Surface
from agent_server.api.agent_protocol.threads import ThreadId, thread_id_of
from agent_server.api.agent_protocol.wire import WireResponse, encode
from agent_server.api.deps import Principal, rate_limit
from agent_server.errors import AgentServerError, RunNotFound
from agent_server.runs.runs import RunRequest
from agent_server.runs.store import RunRecord

log = logging.getLogger(__name__)

router = APIRouter(tags=["agent protocol"], default_response_class=WireResponse)
TRUE = frozenset({"1", "true", "yes", "True"})


# --- shaping -----------------------------------------------------------------------


def run_request(surface: AgentProtocol, body: RunCreate, *, waited: bool = False) -> RunRequest:
    """The core's run request for a body: graph stream modes for the wire modes asked
    for, the assistant resolved (by id or graph id: 404 when neither).

    `waited`: the client waits for the result only (`/wait`). Unless it named stream
    modes, the run then logs no per-step events (the result is kept apart), which
    spares serializing the whole state at every step; a join of such a run sees its
    `metadata` and `end`, which is all `/join` needs."""
    assistant = surface.assistants.get(body.assistant_id)
    checkpoint = body.checkpoint.config() if body.checkpoint is not None else {}
    if body.checkpoint_id:
        checkpoint["checkpoint_id"] = body.checkpoint_id
    interrupts: dict[str, Any] = {}
    for name in ("interrupt_before", "interrupt_after"):
        value = getattr(body, name)
        interrupts[name] = value if value in (None, "*") else tuple(value)
    return RunRequest(
        assistant_id=assistant.assistant_id,
        input=body.input,
        command=body.command,
        stream_modes=()
        if waited and "stream_mode" not in body.model_fields_set
        else graph_modes(body.modes()),
        subgraphs=body.stream_subgraphs,
        configurable=body.config.configurable,
        tags=tuple(body.config.tags),
        recursion_limit=body.config.recursion_limit,
        context=body.context,
        metadata=body.metadata,
        checkpoint=checkpoint if checkpoint.get("checkpoint_id") else None,
        multitask_strategy=body.multitask_strategy,
        if_not_exists=body.if_not_exists,
        on_completion=body.on_completion,
        durability=body.durability,
        **interrupts,
    )


def run_of(record: RunRecord) -> dict[str, Any]:
    """A `Run` (`sdk/schema.py`)."""
    return {
        "run_id": record.run_id,
        "thread_id": record.thread_id,
        "assistant_id": record.assistant_id,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "status": record.status,
        "metadata": record.metadata,
        "multitask_strategy": record.multitask_strategy,
        "kwargs": record.kwargs,
        "error": record.error,
    }


def run_path(record: RunRecord) -> str:
    return f"/threads/{record.thread_id}/runs/{record.run_id}"


def wire_modes(record: RunRecord) -> frozenset[str]:
    """The wire modes a join shows when it names none: the run's own, LangGraph's
    `messages` shown as `messages-tuple` (what every current client asks for)."""
    modes = record.kwargs.get("stream_modes") or ["values"]
    return frozenset("messages-tuple" if mode == "messages" else mode for mode in modes)


def parse_modes(values: list[str] | None) -> frozenset[str] | None:
    """`stream_mode` of a join: repeated parameters (both SDKs) or one JSON array.
    Empty values are none (httpx sends the Python SDK's `stream_mode=None` as
    `stream_mode=`)."""
    modes: list[str] = []
    for value in values or ():
        if not value:
            continue
        if value.startswith("["):
            try:
                modes += [str(v) for v in json.loads(value)]
                continue
            except ValueError:
                pass
        modes.append(value)
    return frozenset(modes) or None


# --- responses ---------------------------------------------------------------------


async def _cancel_quietly(surface: AgentProtocol, principal: str, record: RunRecord) -> None:
    """On a client's disconnect: shielded (the request is being torn down) and never
    raising (nobody is left to tell)."""
    with anyio.CancelScope(shield=True):
        try:
            await surface.runs.cancel(principal, record.thread_id, record.run_id)
        except Exception:
            log.exception("could not cancel run %s after a disconnect", record.run_id)


async def _sse_body(
    surface: AgentProtocol,
    principal: str,
    record: RunRecord,
    modes: frozenset[str],
    after: str | None,
    cancel_on_disconnect: bool,
) -> AsyncIterator[bytes]:
    seen: Any = {}
    ended = False
    try:
        async for event in surface.runs.stream(
            principal, record.thread_id, record.run_id, after=after
        ):
            out, seen = frames(event, modes, seen)
            for item in out:
                yield item
            ended = ended or event.event == "end"
    except AgentServerError as exc:  # e.g. the store went away mid-stream
        yield frame("error", {"error": type(exc).__name__, "message": exc.message})
    except (RedisError, OSError) as exc:
        log.warning("run stream %s broke: %s", record.run_id, type(exc).__name__)
        yield frame(
            "error", {"error": "StoreUnavailable", "message": "the state store is unreachable"}
        )
    finally:
        if cancel_on_disconnect and not ended:
            await _cancel_quietly(surface, principal, record)


def sse_response(
    request: Request,
    surface: AgentProtocol,
    principal: str,
    record: RunRecord,
    modes: frozenset[str],
    *,
    after: str | None,
    cancel_on_disconnect: bool,
) -> EventSourceResponse:
    path = run_path(record)
    return EventSourceResponse(
        _sse_body(surface, principal, record, modes, after, cancel_on_disconnect),
        ping=request.app.state.settings.sse_ping_seconds,
        ping_message_factory=lambda: ServerSentEvent(comment="heartbeat"),
        headers={"Location": f"{path}/stream", "Content-Location": path},
    )


async def _json_body(
    surface: AgentProtocol,
    principal: str,
    record: RunRecord,
    cancel_on_disconnect: bool,
    keepalive: float,
) -> AsyncIterator[bytes]:
    """Newlines while the run goes on, then its result. Hand-written because the
    keep-alive must interleave with one awaited result (no library does that for a
    plain JSON response)."""
    waiting = asyncio.ensure_future(surface.runs.wait(principal, record.thread_id, record.run_id))
    answered = False
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=keepalive)
            if done:
                break
            yield b"\n"
        try:
            result = waiting.result()
        except AgentServerError as exc:
            result = {"__error__": {"error": type(exc).__name__, "message": exc.message}}
        answered = True
        yield encode(result)
    finally:
        if not waiting.done():
            waiting.cancel()
        if cancel_on_disconnect and not answered:
            await _cancel_quietly(surface, principal, record)


def json_response(
    request: Request,
    surface: AgentProtocol,
    principal: str,
    record: RunRecord,
    *,
    cancel_on_disconnect: bool,
) -> StreamingResponse:
    """The run's result as JSON, a newline every `SSE_PING_SECONDS` until then (the
    same keep-alive spacing as the streams; the reference uses 5 s)."""
    path = run_path(record)
    keepalive = request.app.state.settings.sse_ping_seconds
    return StreamingResponse(
        _json_body(surface, principal, record, cancel_on_disconnect, keepalive),
        media_type="application/json",
        headers={"Location": f"{path}/join", "Content-Location": path},
    )


# --- routes --------------------------------------------------------------------------

Limited = [Depends(rate_limit)]
"""Starting a run counts against `RATE_LIMIT_PER_MINUTE`, as a REST message does."""


@router.post("/threads/{thread_id}/runs", response_model=None, dependencies=Limited)
async def create(
    surface: Surface,
    principal: Principal,
    thread_id: ThreadId,
    body: body_of(RunCreate),
    response: Response,
) -> Any:
    record = await surface.runs.create(
        principal, thread_id_of(thread_id), run_request(surface, body)
    )
    response.headers["Content-Location"] = run_path(record)
    return run_of(record)


@router.post(
    "/threads/{thread_id}/runs/stream",
    response_model=None,
    dependencies=Limited,
    response_class=EventSourceResponse,
)
async def create_and_stream(
    request: Request,
    surface: Surface,
    principal: Principal,
    thread_id: ThreadId,
    body: body_of(RunCreate),
) -> EventSourceResponse:
    record = await surface.runs.create(
        principal, thread_id_of(thread_id), run_request(surface, body)
    )
    return sse_response(
        request,
        surface,
        principal,
        record,
        body.modes(),
        after=None,
        cancel_on_disconnect=body.on_disconnect == "cancel",
    )


@router.post("/threads/{thread_id}/runs/wait", response_model=None, dependencies=Limited)
async def create_and_wait(
    request: Request,
    surface: Surface,
    principal: Principal,
    thread_id: ThreadId,
    body: body_of(RunCreate),
) -> StreamingResponse:
    record = await surface.runs.create(
        principal, thread_id_of(thread_id), run_request(surface, body, waited=True)
    )
    return json_response(
        request, surface, principal, record, cancel_on_disconnect=body.on_disconnect == "cancel"
    )


@router.get("/threads/{thread_id}/runs", response_model=None)
async def list_runs(
    surface: Surface,
    principal: Principal,
    thread_id: ThreadId,
    limit: Annotated[int, Query(ge=0, le=1000)] = 10,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    status: Literal["pending", "running", "success", "error", "timeout", "interrupted"]
    | None = None,
) -> Any:
    records = await surface.runs.list(
        principal, thread_id_of(thread_id), limit=limit, offset=offset, status=status
    )
    return [run_of(r) for r in records]


async def _record(surface: AgentProtocol, principal: str, thread_id: str, run_id: str) -> RunRecord:
    try:
        run_id = str(uuid.UUID(run_id))
    except ValueError:
        raise RunNotFound(run_id) from None
    return await surface.runs.get(principal, thread_id_of(thread_id), run_id)


@router.get("/threads/{thread_id}/runs/{run_id}", response_model=None)
async def get(surface: Surface, principal: Principal, thread_id: ThreadId, run_id: str) -> Any:
    return run_of(await _record(surface, principal, thread_id, run_id))


@router.get("/threads/{thread_id}/runs/{run_id}/join", response_model=None)
async def join(
    request: Request, surface: Surface, principal: Principal, thread_id: ThreadId, run_id: str
) -> StreamingResponse:
    record = await _record(surface, principal, thread_id, run_id)
    return json_response(request, surface, principal, record, cancel_on_disconnect=False)


@router.get(
    "/threads/{thread_id}/runs/{run_id}/stream",
    response_model=None,
    response_class=EventSourceResponse,
)
async def join_stream(
    request: Request,
    surface: Surface,
    principal: Principal,
    thread_id: ThreadId,
    run_id: str,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    cancel_on_disconnect: str = "false",
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Without `Last-Event-ID`: the run's events from now on (a finished run's stream
    ends at once). With it: every event after that id, then live (`-1`: from the
    first). All the `stream_mode`s named are honoured (the reference takes one)."""
    record = await _record(surface, principal, thread_id, run_id)
    return sse_response(
        request,
        surface,
        principal,
        record,
        parse_modes(stream_mode) or wire_modes(record),
        after=last_event_id or "$",
        cancel_on_disconnect=cancel_on_disconnect in TRUE,
    )


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", response_model=None)
async def cancel(
    surface: Surface,
    principal: Principal,
    thread_id: ThreadId,
    run_id: str,
    wait: str = "false",
    action: Literal["interrupt", "rollback"] = "interrupt",
) -> Any:
    """202 at once; with `wait=1`, once the run stopped, its result (`{}` when it was
    rolled back: nothing of it is left)."""
    record = await _record(surface, principal, thread_id, run_id)
    waited = wait in TRUE
    after = await surface.runs.cancel(
        principal, record.thread_id, record.run_id, wait=waited, action=action
    )
    if not waited:
        return Response(status_code=202)
    if after is None:
        return {}
    return await surface.runs.wait(principal, record.thread_id, record.run_id)

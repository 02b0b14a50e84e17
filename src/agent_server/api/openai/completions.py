"""`POST /v1/chat/completions`, whole or streamed, over the run core.

Without `X-Session-ID` a request is stateless: a run on a temporary thread with the
conversation as sent, deleted when it ends (accounting, limits and metrics still
count). `X-Session-ID: new` starts a session from the conversation as sent;
`X-Session-ID: <id>` (a session of the caller's) continues one: the session holds the
conversation, so only the request's last (user) message is new. The session's id
comes back in `X-Session-ID`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from agent_server.api.deps import AppResources, Principal, rate_limit
from agent_server.api.openai.models import pinned_model
from agent_server.api.openai.relay import Relay, outside_budget
from agent_server.api.openai.schemas import ChatCompletionRequest
from agent_server.api.openai.translate import (
    ChunkStream,
    agent_headers,
    completion,
    no_answer,
    run_input,
)
from agent_server.errors import (
    RunFailed,
    SessionBusy,
    SessionNotFound,
    ThreadBusy,
    UnsupportedParameter,
)
from agent_server.runs.runs import RunRequest, Runs
from agent_server.runs.store import RunRecord

log = logging.getLogger(__name__)

router = APIRouter(
    prefix="/v1", tags=["openai"], dependencies=[Depends(rate_limit)], include_in_schema=False
)
NEW_SESSION = "new"
STREAM_MODES = ("messages", "custom", "updates")


async def get_runs(request: Request) -> Runs:
    """`async` so that FastAPI calls it inline, not in its thread pool."""
    return request.app.state.runs


async def _thread(runs: Runs, principal: str, session: str | None) -> str | None:
    """The session a request runs on (None: stateless); 404 for anyone else's."""
    if session is None:
        return None
    transcript = runs.transcript
    if session == NEW_SESSION:
        return (await transcript.create_session(principal)).id
    if await transcript.get_session(session, principal) is None:
        raise SessionNotFound(session)
    return session


def _run_request(body: ChatCompletionRequest, model: str | None, *, continuing: bool) -> RunRequest:
    messages = run_input(body, continuing=continuing)
    if messages is None:
        raise UnsupportedParameter(
            "messages", "with X-Session-ID the last message must be the user's new one"
        )
    context: dict[str, Any] = {"model": model}
    if body.temperature is not None:
        context["temperature"] = body.temperature
    if body.token_limit is not None:
        context["max_tokens"] = body.token_limit
    if sampling := body.sampling:
        context["sampling"] = sampling
    return RunRequest(
        assistant_id="agent",
        input={"messages": messages},
        stream_modes=STREAM_MODES if body.stream else ("updates",),
        context=context,
        metadata={"surface": "openai", **({"user": body.user} if body.user else {})},
        multitask_strategy="reject",
    )


async def _cancel_quietly(runs: Runs, principal: str, run: RunRecord) -> None:
    """Shielded (the request may be being torn down) and never raising (nobody is
    left to tell)."""
    with anyio.CancelScope(shield=True):
        try:
            await runs.cancel(principal, run.thread_id, run.run_id)
        except Exception:
            log.exception("could not cancel run %s", run.run_id)


@router.post("/chat/completions")
async def chat_completions(
    body: ChatCompletionRequest,
    principal: Principal,
    resources: AppResources,
    runs: Annotated[Runs, Depends(get_runs)],
    x_session_id: Annotated[str | None, Header(max_length=64)] = None,
) -> Any:
    body.refuse_unsupported()
    model = pinned_model(resources, body.model)
    request = _run_request(
        body, model, continuing=x_session_id is not None and x_session_id != NEW_SESSION
    )
    thread = await _thread(runs, principal, x_session_id)
    try:
        run = await runs.create(principal, thread, request)
    except ThreadBusy as exc:  # only a session can be busy (a temporary thread is new)
        raise SessionBusy(str(thread)) from exc
    completion_id = f"chatcmpl-{run.run_id}"
    created = int(run.created_at.timestamp())
    if not body.stream:
        return await _whole(runs, principal, run, thread, completion_id, created)
    chunks = ChunkStream(
        completion_id,
        body.model,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        agent_events=body.agent_events,
        session_id=thread,
        created=created,
    )
    relay = Relay(runs.stream(principal, run.thread_id, run.run_id), chunks)
    try:
        opening = await relay.opening(resources.settings.sse_ping_seconds)
    except BaseException:
        await relay.aclose()
        if not chunks.ended:  # the request itself went away
            await _cancel_quietly(runs, principal, run)
        raise

    async def events() -> AsyncIterator[dict[str, str]]:
        finished = False
        try:
            for batch in opening:
                for chunk in batch:
                    yield {"data": json.dumps(chunk)}
            async for batch in relay.rest():
                for chunk in batch:
                    yield {"data": json.dumps(chunk)}
            finished = True
            yield {"data": "[DONE]"}
        finally:
            await relay.aclose()
            # A client gone, or a stateless answer it can no longer use: stop the run.
            if not finished or (chunks.reset and thread is None):
                await _cancel_quietly(runs, principal, run)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if thread is not None:
        headers["X-Session-ID"] = thread
    return EventSourceResponse(events(), ping=resources.settings.sse_ping_seconds, headers=headers)


async def _whole(
    runs: Runs,
    principal: str,
    run: RunRecord,
    thread: str | None,
    completion_id: str,
    created: int,
) -> JSONResponse:
    with outside_budget():
        result = await runs.wait(principal, run.thread_id, run.run_id)
    if "__error__" in result:
        raise RunFailed(result["__error__"])
    summary = result.get("last_turn")
    if "__interrupt__" in result or not summary:
        raise RunFailed(no_answer(paused="__interrupt__" in result, session_id=thread))
    return JSONResponse(
        completion(completion_id, created, summary), headers=agent_headers(summary, thread)
    )

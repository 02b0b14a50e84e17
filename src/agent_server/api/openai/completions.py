"""`POST /v1/chat/completions`, whole or streamed, over the run core.

Without `X-Session-ID` a request is stateless: a run on a temporary thread with the
conversation as sent, deleted when it ends (accounting, limits and metrics still
count). With `X-Session-ID: <id>` (a session of the caller's) the request continues it:
only its last (user) message is new; `X-Session-ID: new` starts one. The session's id
comes back in `X-Session-ID`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from agent_server.api.deps import AppResources, Principal, rate_limit
from agent_server.api.openai.models import pinned_model
from agent_server.api.openai.schemas import ChatCompletionRequest
from agent_server.api.openai.translate import (
    ChunkStream,
    agent_headers,
    completion,
    graph_messages,
    new_user_message,
)
from agent_server.errors import RunFailed, SessionNotFound, UnsupportedParameter
from agent_server.runs.runs import RunRequest, Runs

router = APIRouter(prefix="/v1", tags=["openai"], dependencies=[Depends(rate_limit)])
NEW_SESSION = "new"
STREAM_MODES = ("messages", "custom", "updates")


def get_runs(request: Request) -> Runs:
    return request.app.state.runs


async def _thread(runs: Runs, principal: str, session: str | None) -> str | None:
    """The session a request continues (None: stateless); 404 for anyone else's."""
    if session is None:
        return None
    transcript = runs.transcript
    if session == NEW_SESSION:
        return (await transcript.create_session(principal)).id
    if await transcript.get_session(session, principal) is None:
        raise SessionNotFound(session)
    return session


def _run_request(
    body: ChatCompletionRequest, model: str | None, *, session: bool, stream: bool
) -> RunRequest:
    if session:
        messages = new_user_message(body)
        if messages is None:
            raise UnsupportedParameter(
                "messages", "with X-Session-ID the last message must be the user's new one"
            )
    else:
        messages = graph_messages(body.messages)
    context: dict[str, Any] = {"model": model}
    if body.temperature is not None:
        context["temperature"] = body.temperature
    if body.token_limit is not None:
        context["max_tokens"] = body.token_limit
    return RunRequest(
        assistant_id="agent",
        input={"messages": messages},
        stream_modes=STREAM_MODES if stream else ("updates",),
        context=context,
        metadata={"surface": "openai", **({"user": body.user} if body.user else {})},
        multitask_strategy="reject",
    )


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
    thread = await _thread(runs, principal, x_session_id)
    run = await runs.create(
        principal, thread, _run_request(body, model, session=thread is not None, stream=body.stream)
    )
    completion_id = f"chatcmpl-{run.run_id}"
    if not body.stream:
        result = await runs.wait(principal, run.thread_id, run.run_id)
        if "__error__" in result:
            raise RunFailed(result["__error__"])
        summary = result.get("last_turn") or {}
        created = int(run.created_at.timestamp())
        return JSONResponse(
            completion(completion_id, created, summary), headers=agent_headers(summary, thread)
        )
    chunks = ChunkStream(
        completion_id,
        body.model,
        include_usage=bool(body.stream_options and body.stream_options.include_usage),
        agent_events=body.agent_events,
    )

    async def events() -> AsyncIterator[dict[str, str]]:
        finished = False
        try:
            async for event in runs.stream(principal, run.thread_id, run.run_id):
                for chunk in chunks.feed(event.event, event.data):
                    yield {"data": json.dumps(chunk)}
                if chunks.ended:
                    break
            finished = True
            yield {"data": "[DONE]"}
        finally:
            if not finished:  # the client went away: nobody wants this answer
                await runs.cancel(principal, run.thread_id, run.run_id)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if thread is not None:
        headers["X-Session-ID"] = thread
    return EventSourceResponse(events(), ping=resources.settings.sse_ping_seconds, headers=headers)

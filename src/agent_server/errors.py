"""Domain errors, each carrying its HTTP status and stable error code.

Services and nodes raise these; one exception handler in `api/errors.py` turns
them into `{"error": {"code", "message", "request_id"}}`. Keeping status and code
next to the error (rather than in the handler) means a new error cannot be added
without deciding how a client sees it.
"""

from __future__ import annotations

import math
from typing import Any


class AgentServerError(Exception):
    """Base of every error a client may see."""

    status_code = 500
    code = "internal_error"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidModel(AgentServerError):
    """A request asked for a model that is not in the configured chain."""

    status_code = 422
    code = "invalid_model"


class InvalidTools(AgentServerError):
    """A request named tools that do not exist."""

    status_code = 422
    code = "invalid_tools"


class SessionNotFound(AgentServerError):
    status_code = 404
    code = "session_not_found"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} not found")


class ThreadNotFound(SessionNotFound):
    """A thread (= session) the caller does not own, or a checkpoint it lacks."""

    code = "thread_not_found"

    def __init__(self, thread_id: str, *, checkpoint_id: str | None = None) -> None:
        AgentServerError.__init__(
            self,
            f"thread {thread_id!r} not found"
            if checkpoint_id is None
            else f"checkpoint {checkpoint_id!r} of thread {thread_id!r} not found",
        )


class ThreadExists(AgentServerError):
    """`POST /threads` with a `thread_id` already taken (and `if_exists="raise"`)."""

    status_code = 409
    code = "thread_exists"

    def __init__(self, thread_id: str) -> None:
        super().__init__(f"thread {thread_id!r} already exists")


class InvalidRequest(AgentServerError):
    """A well-formed request the server cannot honour (an unknown `as_node`, a bad filter)."""

    status_code = 422
    code = "invalid_request"


class AssistantNotFound(AgentServerError):
    status_code = 404
    code = "assistant_not_found"

    def __init__(self, assistant_id: str) -> None:
        super().__init__(f"assistant {assistant_id!r} not found")


class DocumentNotFound(AgentServerError):
    status_code = 404
    code = "document_not_found"

    def __init__(self, document_id: str) -> None:
        super().__init__(f"document {document_id!r} not found")


class SessionBusy(AgentServerError):
    """Another run is active on the session; runs on one thread must not interleave."""

    status_code = 409
    code = "session_busy"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} is busy with another message; retry when it ends")


class ThreadBusy(SessionBusy):
    """A run holds or waits for the thread, so it cannot be deleted or edited now."""

    code = "thread_busy"

    def __init__(self, thread_id: str) -> None:
        AgentServerError.__init__(
            self, f"thread {thread_id!r} has an active run; retry when it ends"
        )


class ApprovalPending(AgentServerError):
    """The session's last turn waits for a person's decisions on its tool calls: a new
    message would abandon that turn, so the client must decide first."""

    status_code = 409
    code = "approval_pending"

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"session {session_id!r} waits for approval of tool calls; send the decisions "
            "to /api/chat/session/{id}/approval first"
        )


class NotAwaitingApproval(AgentServerError):
    """Decisions sent for a session or thread that is not paused for approval."""

    status_code = 409
    code = "not_awaiting_approval"

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} is not waiting for an approval")


class InvalidApproval(AgentServerError):
    """Decisions that do not fit the pending tool calls (one per call, known ids,
    edited arguments the tool accepts); checked before resuming, so the run stays
    paused and the client can send them again."""

    status_code = 422
    code = "invalid_decisions"


class RunNotFound(AgentServerError):
    """A run that does not exist, or belongs to another principal."""

    status_code = 404
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found")


class BadRunRequest(AgentServerError):
    """A run request that cannot be executed as asked (a resume without a thread,
    an unknown stream mode, a context the graph cannot take)."""

    status_code = 400
    code = "bad_request"


class RunFailed(AgentServerError):
    """A run executed as a task failed: its recorded error, re-raised for a caller that
    waited on it, with the status and code the failure had (e.g. 503 from the chain)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(
            str(error.get("message") or "the run failed"), details=error.get("details")
        )
        self.status_code = int(error.get("status") or 500)
        self.code = str(error.get("code") or "internal_error")


class UnsupportedParameter(AgentServerError):
    """A request field that would change the answer's meaning and that we do not
    serve (OpenAI's `n > 1`, client-side `tools`…): refused, never ignored."""

    status_code = 400
    code = "unsupported_parameter"

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message, details={"param": param})


class ModelNotFound(AgentServerError):
    status_code = 404
    code = "model_not_found"

    def __init__(self, model: str) -> None:
        super().__init__(f"the model {model!r} does not exist", details={"param": "model"})


class UpstreamUnavailable(AgentServerError):
    """Every model in the chain failed for reasons other than rate limits."""

    status_code = 503
    code = "upstream_unavailable"


class UpstreamAuthError(AgentServerError):
    """The upstream rejected our credentials: no other model will help."""

    status_code = 502
    code = "upstream_auth"


class StoreUnavailable(AgentServerError):
    """Redis or the SQL database did not answer (in time): retrying shortly may work."""

    status_code = 503
    code = "store_unavailable"
    headers = {"Retry-After": "2"}

    def __init__(self, message: str = "a data store is unreachable; retry shortly") -> None:
        super().__init__(message)


class IdempotencyKeyReused(AgentServerError):
    """An `Idempotency-Key` already answered a request with a different body."""

    status_code = 422
    code = "idempotency_key_reused"


class RequestInProgress(AgentServerError):
    """The request with this `Idempotency-Key` is still running: retry when it ends."""

    status_code = 409
    code = "request_in_progress"


class UpstreamBadRequest(AgentServerError):
    """The provider called our request invalid (not context/policy): retrying won't help."""

    status_code = 502
    code = "upstream_bad_request"


class UpstreamRejected(AgentServerError):
    """Every model said no for its own reason (not served, no credit, moderation, a
    parameter it does not take...): `details.models` lists each one's reason."""

    status_code = 502
    code = "upstream_rejected"


class Unauthorized(AgentServerError):
    status_code = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class LoopbackOnly(AgentServerError):
    """A keyless server was reached on a non-loopback address: it serves without a key
    only to local callers (decided at start-up, see `api/auth.py`)."""

    status_code = 403
    code = "loopback_only"


class HeadersTooLarge(AgentServerError):
    """Request headers over `MAX_HEADER_BYTES` or `MAX_HEADERS`."""

    status_code = 431
    code = "headers_too_large"


class RateLimited(AgentServerError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message, details={"retry_after_seconds": math.ceil(retry_after)})
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after)))}


class BudgetExceeded(RateLimited):
    code = "budget_exceeded"


class StreamTooLong(AgentServerError):
    status_code = 504
    code = "stream_timeout"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the stream exceeded its {seconds:g} s limit")


class ShuttingDown(AgentServerError):
    status_code = 503
    code = "shutting_down"

    def __init__(self) -> None:
        super().__init__("the server is shutting down; retry on another replica")

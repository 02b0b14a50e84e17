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


class UpstreamUnavailable(AgentServerError):
    """Every model in the chain failed for reasons other than rate limits."""

    status_code = 503
    code = "upstream_unavailable"


class UpstreamAuthError(AgentServerError):
    """The upstream rejected our credentials: no other model will help."""

    status_code = 502
    code = "upstream_auth"


class StoreUnavailable(AgentServerError):
    status_code = 503
    code = "store_unavailable"


class UpstreamBadRequest(AgentServerError):
    """The provider called our request invalid (not context/policy): retrying won't help."""

    status_code = 502
    code = "upstream_bad_request"


class Unauthorized(AgentServerError):
    status_code = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


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

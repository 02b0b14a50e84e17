"""Classify every way an upstream model call can fail.

The class decides what the fallback chain does next (see `fallback.py`), so it
is computed in one place from the exception type, HTTP status, provider error
code and, as a last resort, the message text (providers disagree on codes for
"context too long" and "content policy").
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from dataclasses import dataclass
from enum import StrEnum

import httpx
import openai


class Reason(StrEnum):
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    CONNECTION = "connection"
    MALFORMED = "malformed_reply"
    INVALID_TOOL_CALL = "invalid_tool_call"
    CONTEXT_TOO_LONG = "context_too_long"
    CONTENT_POLICY = "content_policy"
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    COOLING_DOWN = "cooling_down"
    NO_TOOL_SUPPORT = "no_tool_support"
    DEADLINE = "deadline"


RATE_LIMITED = frozenset({Reason.RATE_LIMIT, Reason.COOLING_DOWN})
"""Reasons that make the offline model's degraded answer the right response."""

_CONTEXT_PATTERN = re.compile(
    r"context[_ ]length|maximum context|context window|too many tokens|prompt is too long", re.I
)
_POLICY_PATTERN = re.compile(r"content[_ ]?(policy|filter|management)|moderation|safety", re.I)
MAX_RETRY_AFTER_SECONDS = 3600.0


class UpstreamReplyError(Exception):
    """A 200 reply we cannot use (empty, unparseable tool calls, filtered)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Failure:
    reason: Reason
    retry_after: float | None = None
    """Seconds the provider asked us to wait (429 Retry-After), when given."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """`Retry-After` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (now if now is not None else time.time())
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _provider_error(exc: openai.APIStatusError) -> tuple[str, str]:
    """The provider's error code and message, wherever in the body it put them."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    if not isinstance(error, dict):
        error = {"message": str(error)}
    code = str(error.get("code") or getattr(exc, "code", "") or "")
    return code, f"{exc} {error.get('message') or ''}"


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, UpstreamReplyError):
        return Failure(exc.reason)
    if isinstance(exc, openai.RateLimitError):
        return Failure(
            Reason.RATE_LIMIT, parse_retry_after(exc.response.headers.get("retry-after"))
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return Failure(Reason.AUTH)
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | asyncio.TimeoutError):
        return Failure(Reason.TIMEOUT)
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError | ConnectionError):
        return Failure(Reason.CONNECTION)
    if isinstance(exc, openai.APIStatusError):
        code, text = _provider_error(exc)
        if exc.status_code == 413 or _CONTEXT_PATTERN.search(code) or _CONTEXT_PATTERN.search(text):
            return Failure(Reason.CONTEXT_TOO_LONG)
        if _POLICY_PATTERN.search(code) or _POLICY_PATTERN.search(text):
            return Failure(Reason.CONTENT_POLICY)
        if exc.status_code == 429:
            return Failure(
                Reason.RATE_LIMIT, parse_retry_after(exc.response.headers.get("retry-after"))
            )
        if exc.status_code >= 500 or exc.status_code == 408:
            return Failure(Reason.SERVER_ERROR)
        if exc.status_code in (401, 403):
            return Failure(Reason.AUTH)
        return Failure(Reason.BAD_REQUEST)
    if isinstance(exc, json.JSONDecodeError | openai.APIResponseValidationError):
        return Failure(Reason.MALFORMED)
    # Anything else raised while parsing a reply (IndexError on empty choices,
    # TypeError on null fields, KeyError...) is the provider's malformed answer.
    return Failure(Reason.MALFORMED)

"""Classify every way an upstream model call can fail.

The class decides what the fallback chain does next (see `fallback.py`), so it
is computed in one place, from one table (`RULES`) written from what each
provider documents or is seen to answer (the source is cited beside each row).
A failure is matched by HTTP status, the provider's error code and, where
providers disagree on codes, the message text. Errors that arrive inside a 200
(OpenRouter: "once a model has started, errors are emitted in the response body
or as an SSE data event") go through the same table, their `code` standing in for
the status when it is a number.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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
    MODEL_UNAVAILABLE = "model_unavailable"
    """The provider does not serve this model (404, invalid model id)."""
    PAYMENT_REQUIRED = "payment_required"
    """402: no credit for this model (free models of the same provider may still answer)."""
    UNSUPPORTED_REQUEST = "unsupported_request"
    """A 400/422 about one model's parameters or capabilities: another model may accept it."""
    AUTH = "auth"
    BAD_REQUEST = "bad_request"
    COOLING_DOWN = "cooling_down"
    NO_TOOL_SUPPORT = "no_tool_support"
    DEADLINE = "deadline"


RATE_LIMITED = frozenset({Reason.RATE_LIMIT, Reason.COOLING_DOWN})
"""Reasons that make the offline model's degraded answer the right response."""

REJECTED = frozenset(
    {
        Reason.AUTH,
        Reason.MODEL_UNAVAILABLE,
        Reason.PAYMENT_REQUIRED,
        Reason.CONTENT_POLICY,
        Reason.UNSUPPORTED_REQUEST,
        Reason.BAD_REQUEST,
        Reason.CONTEXT_TOO_LONG,
    }
)
"""The provider answered and said no: a retry of the same request will not help."""

MAX_RETRY_AFTER_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: every given field must match."""

    reason: Reason
    status: frozenset[int] | None = None
    code: re.Pattern[str] | None = None
    """Matched against the provider's error `code`/`type` (string codes)."""
    text: re.Pattern[str] | None = None
    """Matched against the error message."""
    source: str = ""

    def matches(self, status: int | None, code: str, text: str) -> bool:
        if self.status is not None and status not in self.status:
            return False
        if self.code is not None and not self.code.search(code):
            return False
        return self.text is None or bool(self.text.search(text))


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


_ANY_4XX = frozenset(range(400, 500))
_CONTEXT = _re(
    r"context[_ ]length|maximum context|context window|context size|too many tokens"
    r"|prompt is too long|exceed_context_size"
)
_POLICY = _re(r"content[_ ]?(policy|filter|management)|moderation|flagged|guardrail|safety")
_MODEL_GONE = _re(
    r"model_not_found|not a valid model|invalid model|no endpoints found|does not exist"
    r"|not found, try pulling|model [^\n]{0,200}? not found|unknown model"
)
_UNSUPPORTED = _re(r"unsupported_(parameter|value)|does not support|not supported|unsupported")

RULES: tuple[Rule, ...] = (
    # Context first: OpenAI (400 `context_length_exceeded`), vLLM (400 "This model's
    # maximum context length is N tokens", vllm-project/vllm#20409), llama.cpp server
    # (400 `exceed_context_size_error` "exceeds the available context size"), 413.
    Rule(Reason.CONTEXT_TOO_LONG, frozenset({413})),
    Rule(Reason.CONTEXT_TOO_LONG, _ANY_4XX, code=_CONTEXT),
    Rule(Reason.CONTEXT_TOO_LONG, _ANY_4XX, text=_CONTEXT),
    # 401 on every provider: OpenRouter "Invalid credentials (OAuth session expired,
    # disabled/invalid API key)" (openrouter.ai/docs/api-reference/errors), OpenAI
    # `invalid_api_key`.
    Rule(Reason.AUTH, frozenset({401})),
    # OpenRouter 402: "Your account or API key has insufficient credits".
    Rule(Reason.PAYMENT_REQUIRED, frozenset({402})),
    # OpenRouter 403: "Your chosen model requires moderation and your input was
    # flagged" / "guardrail block" (error.metadata.reasons, flagged_input).
    Rule(Reason.CONTENT_POLICY, frozenset({403}), text=_POLICY),
    Rule(Reason.CONTENT_POLICY, frozenset({403}), code=_POLICY),
    # Any other 403 is a permission problem of the key (OpenAI "unsupported_country",
    # OpenRouter "insufficient permissions"): that provider will not answer.
    Rule(Reason.AUTH, frozenset({403})),
    # OpenRouter 404 "No endpoints found that support tool use" / "... that support
    # image input": the model exists, this request needs what it lacks.
    Rule(Reason.UNSUPPORTED_REQUEST, frozenset({404}), text=_re(r"endpoints found that support")),
    # 404, the model is not served: OpenRouter "No endpoints found for <model>.",
    # OpenAI 404 `model_not_found` "The model `x` does not exist or you do not have
    # access to it." (openai/openai-agents-python#458), Ollama 404 "model \"x\" not
    # found, try pulling it first" (netease-youdao/QAnything#555), vLLM 404
    # `NotFoundError` "The model `x` does not exist." (vllm-project/vllm#3485).
    Rule(Reason.MODEL_UNAVAILABLE, frozenset({404})),
    # OpenRouter 400 "x is not a valid model ID"; OpenAI-compatible gateways answer
    # 400 `model_not_found` / "invalid model" too.
    Rule(Reason.MODEL_UNAVAILABLE, frozenset({400, 422}), code=_MODEL_GONE),
    Rule(Reason.MODEL_UNAVAILABLE, frozenset({400, 422}), text=_MODEL_GONE),
    Rule(Reason.RATE_LIMIT, frozenset({429})),
    # Content filters that answer 400: OpenAI `content_filter` / `content_policy_violation`.
    Rule(Reason.CONTENT_POLICY, frozenset({400, 422}), code=_POLICY),
    Rule(Reason.CONTENT_POLICY, frozenset({400, 422}), text=_POLICY),
    # OpenAI 400 `unsupported_parameter` ("'max_tokens' is not supported with this
    # model. Use 'max_completion_tokens' instead.", param `max_tokens`) and
    # `unsupported_value` (e.g. temperature on reasoning models): one model's limits.
    Rule(Reason.UNSUPPORTED_REQUEST, frozenset({400}), code=_UNSUPPORTED),
    Rule(Reason.UNSUPPORTED_REQUEST, frozenset({400}), text=_UNSUPPORTED),
    # 422: a server's own request validation (vLLM and llama-cpp-python are FastAPI:
    # pydantic rejects a field that server's model does not take).
    Rule(Reason.UNSUPPORTED_REQUEST, frozenset({422})),
    # OpenRouter 408 "Your request timed out".
    Rule(Reason.TIMEOUT, frozenset({408})),
    # OpenRouter 502 "Your chosen model is down or we received an invalid response
    # from it", 503 "There is no available model provider that meets your routing
    # requirements"; any 5xx elsewhere (llama.cpp answers 500 `server_error`).
    Rule(Reason.SERVER_ERROR, frozenset(range(500, 600))),
    # Anything else 4xx (OpenRouter 400 "invalid or missing params"): our request.
    Rule(Reason.BAD_REQUEST, _ANY_4XX),
)


class UpstreamReplyError(Exception):
    """A 200 reply we cannot use (empty, unparseable tool calls, filtered, an error body)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Failure:
    reason: Reason
    retry_after: float | None = None
    """Seconds the provider asked us to wait (429 Retry-After), when given."""
    provider_wide: bool = False
    """The whole provider is unusable (refused connection, rejected key), not one model."""


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


def lookup(status: int | None, code: str, text: str) -> Reason | None:
    """The first row of `RULES` that matches, if any."""
    for rule in RULES:
        if rule.matches(status, code, text):
            return rule.reason
    return None


def _error_fields(body: object, fallback_text: str = "") -> tuple[int | None, str, str]:
    """(numeric code, string code/type, message) of an error body, wherever it put them:
    OpenAI `{"error": {"message", "type", "code": "model_not_found"}}`, OpenRouter
    `{"error": {"code": 404, "message", "metadata"}}`, vLLM `{"object": "error",
    "message", "type": "NotFoundError", "code": 404}`, llama.cpp `{"error": {"code":
    400, "message", "type": "exceed_context_size_error"}}`."""
    error: Any = body.get("error", body) if isinstance(body, Mapping) else body
    if not isinstance(error, Mapping):
        return None, "", f"{fallback_text} {error or ''}"
    raw_code = error.get("code")
    numeric = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    if numeric is None and isinstance(raw_code, str) and raw_code.isdigit():
        numeric = int(raw_code)
    codes = " ".join(str(v) for v in (raw_code, error.get("type")) if v and v != numeric)
    metadata = error.get("metadata")
    message = f"{fallback_text} {error.get('message') or ''}"
    if isinstance(metadata, Mapping) and metadata.get("reasons"):
        message += f" moderation {metadata.get('reasons')}"  # OpenRouter's moderation 403
    return numeric, codes, message


def classify_error_body(body: object, *, status: int | None = None) -> Reason:
    """The class of an error that came inside a 200 (JSON body or SSE event): unknown
    ones are the provider failing mid-answer, a server error."""
    numeric, code, text = _error_fields(body)
    reason = lookup(status or numeric, code, text)
    if reason is None:
        if _CONTEXT.search(code) or _CONTEXT.search(text):
            return Reason.CONTEXT_TOO_LONG
        if _POLICY.search(code) or _POLICY.search(text):
            return Reason.CONTENT_POLICY
        return Reason.SERVER_ERROR
    return reason


def _refused(exc: BaseException) -> bool:
    """Did the connection never open (nothing listening, DNS failure)? A drop after it
    opened is one model's stream failing; this is the whole provider being away."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, httpx.ConnectError | ConnectionRefusedError):
            return True
        current = current.__cause__ or current.__context__
    return False


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, UpstreamReplyError):
        return Failure(exc.reason)
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException | asyncio.TimeoutError):
        return Failure(Reason.TIMEOUT)
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError | ConnectionError):
        return Failure(Reason.CONNECTION, provider_wide=_refused(exc))
    if isinstance(exc, openai.APIStatusError):
        _, code, text = _error_fields(exc.body, str(exc))
        reason = lookup(exc.status_code, code, text) or Reason.SERVER_ERROR
        retry_after = None
        if reason is Reason.RATE_LIMIT:
            retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
        return Failure(reason, retry_after, provider_wide=reason is Reason.AUTH)
    if isinstance(exc, openai.APIError) and exc.body is not None:
        # An SSE `data:` event carrying `error` in a 200 stream (the SDK raises it).
        reason = classify_error_body(exc.body)
        return Failure(reason, provider_wide=reason is Reason.AUTH)
    if isinstance(exc, json.JSONDecodeError | openai.APIResponseValidationError):
        return Failure(Reason.MALFORMED)
    # Anything else raised while parsing a reply (IndexError on empty choices,
    # TypeError on null fields, KeyError...) is the provider's malformed answer.
    return Failure(Reason.MALFORMED)

"""Classification of upstream failures and Retry-After parsing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import openai
import pytest

from agent_server.llm.errors import (
    MAX_RETRY_AFTER_SECONDS,
    Reason,
    UpstreamReplyError,
    classify,
    parse_retry_after,
)

REQUEST = httpx.Request("POST", "http://upstream.test/v1/chat/completions")


def status_error(status: int, body: object = None, **headers: str) -> openai.APIStatusError:
    response = httpx.Response(status, request=REQUEST, headers=headers, json=body or {})
    cls = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        413: openai.APIStatusError,
        429: openai.RateLimitError,
    }.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return cls("upstream said no", response=response, body=body)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (status_error(429), Reason.RATE_LIMIT),
        (status_error(500), Reason.SERVER_ERROR),
        (status_error(503), Reason.SERVER_ERROR),
        (status_error(408), Reason.TIMEOUT),
        (status_error(401), Reason.AUTH),
        (status_error(403), Reason.AUTH),
        (status_error(413), Reason.CONTEXT_TOO_LONG),
        (
            status_error(400, {"error": {"code": "context_length_exceeded", "message": "x"}}),
            Reason.CONTEXT_TOO_LONG,
        ),
        (
            status_error(400, {"error": {"message": "This model's maximum context length is 8k"}}),
            Reason.CONTEXT_TOO_LONG,
        ),
        (status_error(400, {"error": {"code": "content_filter"}}), Reason.CONTENT_POLICY),
        (status_error(400, {"error": {"code": "invalid_request_error"}}), Reason.BAD_REQUEST),
        (status_error(422), Reason.UNSUPPORTED_REQUEST),
        (openai.APITimeoutError(request=REQUEST), Reason.TIMEOUT),
        (httpx.ReadTimeout("slow", request=REQUEST), Reason.TIMEOUT),
        (TimeoutError(), Reason.TIMEOUT),
        (openai.APIConnectionError(request=REQUEST), Reason.CONNECTION),
        (httpx.RemoteProtocolError("peer closed", request=REQUEST), Reason.CONNECTION),
        (ConnectionResetError(), Reason.CONNECTION),
        (json.JSONDecodeError("bad", "{", 1), Reason.MALFORMED),
        (IndexError("list index out of range"), Reason.MALFORMED),
        (UpstreamReplyError(Reason.INVALID_TOOL_CALL, "bad args"), Reason.INVALID_TOOL_CALL),
    ],
)
def test_classify(exc: BaseException, reason: Reason) -> None:
    assert classify(exc).reason is reason


def test_rate_limit_carries_retry_after() -> None:
    failure = classify(status_error(429, None, **{"retry-after": "12"}))
    assert failure.reason is Reason.RATE_LIMIT
    assert failure.retry_after == 12.0


def test_retry_after_forms() -> None:
    now = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(90.0)
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("999999") == MAX_RETRY_AFTER_SECONDS
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None

"""Which client-sent `X-Request-ID` values we keep (and echo, and log).

asgi-correlation-id keeps only UUID-shaped ids by default, so a caller's
`my-trace-123` was silently replaced and its logs could not be joined with
ours. Any 1 to 128 characters of `[A-Za-z0-9._:-]` are kept: enough for UUIDs,
W3C trace ids, nginx's `$request_id` and readable tags, and nothing that could
split a log line, inject a header or bloat every log record. Anything else is
replaced with a fresh id (the middleware logs that it did).
"""

from __future__ import annotations

import re

MAX_REQUEST_ID_CHARS = 128
_SAFE = re.compile(r"[A-Za-z0-9._:-]+")


def is_safe_request_id(value: str) -> bool:
    # The length check first: the pattern is linear anyway, but a huge header
    # is refused without being scanned.
    return 0 < len(value) <= MAX_REQUEST_ID_CHARS and _SAFE.fullmatch(value) is not None

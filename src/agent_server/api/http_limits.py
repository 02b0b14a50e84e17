"""Request-head limits inside the HTTP parser: 431 before a huge head is buffered.

uvicorn's httptools protocol (what `uvicorn[standard]` serves with) has no limit
on the request head: httptools grows each header value by bytes concatenation,
so one 50 MB header costs seconds of event-loop time (quadratic copying) and
~100 MB of memory before the app sees a single byte, and no middleware can help
because the damage is done by then. (h11 has `h11_max_incomplete_event_size`;
httptools has nothing comparable.)

`BoundedHttpToolsProtocol` counts the head's bytes as they arrive, before they
reach the parser, and its header fields as they are parsed; over either limit it
answers 431 in our JSON error shape. Chunked trailers are headers too, parsed the
same quadratic way after the body: bytes that arrive after the head without
carrying any body (trailers, chunk extensions) are held to the same
`MAX_HEADER_BYTES`, and the connection is closed beyond it. A head must also
arrive whole within `HEADER_TIMEOUT_SECONDS` of its first byte, else 408 (uvicorn
bounds only the idle time between requests, so a client dribbling one header byte
at a time could hold a connection forever: slowloris). After a refusal it
half-closes, discards what the client still sends for a moment (so the client
reads the answer rather than a reset) and closes. Written by hand because no
maintained server offers this for httptools; it overrides uvicorn's
`asyncio.Protocol` and parser callbacks (`data_received`, `on_header`,
`on_headers_complete`, `on_body`, `on_message_complete`, `connection_lost`) and
calls each original.

`agent-server serve` uses it with `MAX_HEADER_BYTES`, `MAX_HEADERS` and
`HEADER_TIMEOUT_SECONDS`; under another
server, pass `--http agent_server.api.http_limits:BoundedHttpToolsProtocol`
(default limits) to uvicorn, or `--http h11 --h11-max-incomplete-event-size N`.
`HeaderLimitMiddleware` (`api/security.py`) applies the same limits to the
parsed headers under any server, but only the parser limit protects memory.
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from agent_server.config import Settings

HEADERS_TOO_LARGE = "headers_too_large"
HEADER_TIMEOUT = "header_timeout"
LINGER_SECONDS = 2.0
"""After a refusal, how long the rest of the client's head is read and dropped before closing."""
_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
_DEFAULTS = Settings.model_fields


def too_large_message(max_header_bytes: int) -> str:
    return f"request headers larger than {max_header_bytes} bytes"


def too_many_message(max_headers: int) -> str:
    return f"more than {max_headers} request header fields"


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes: int = _DEFAULTS["max_header_bytes"].default
    max_headers: int = _DEFAULTS["max_headers"].default
    header_timeout_seconds: float = _DEFAULTS["header_timeout_seconds"].default

    def __init__(
        self,
        *args: Any,
        max_header_bytes: int | None = None,
        max_headers: int | None = None,
        header_timeout_seconds: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if max_header_bytes is not None:
            self.max_header_bytes = max_header_bytes
        if max_headers is not None:
            self.max_headers = max_headers
        if header_timeout_seconds is not None:
            self.header_timeout_seconds = header_timeout_seconds
        self._in_head = True
        self._head_bytes = 0
        self._head_tail = b""
        self._header_count = 0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._bodyless_bytes = 0
        """Bytes fed since the head without any body in them (trailers, chunk framing)."""
        self._body_seen = False

    def data_received(self, data: bytes) -> None:
        if self._refused:  # lingering: drop what the client still sends
            return
        if self._in_head:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(
                    self.header_timeout_seconds, self._head_timed_out
                )
            if self._head_over_limit(data):
                self._refuse(431, HEADERS_TOO_LARGE, too_large_message(self.max_header_bytes))
                return
            super().data_received(data)
            return
        self._body_seen = False
        super().data_received(data)
        if self._body_seen or self._in_head or self._refused:
            return
        self._bodyless_bytes += len(data)
        if self._bodyless_bytes > self.max_header_bytes:
            message = f"request trailers larger than {self.max_header_bytes} bytes"
            self._refuse(431, HEADERS_TOO_LARGE, message)

    def _head_over_limit(self, data: bytes) -> bool:
        """Add this chunk's share of the head (up to its blank line) to the count.

        Counting starts again once a request is complete, so a pipelined request that
        follows another within the same read is counted from the next read on: an
        undercount of at most one read (256 KiB), never an unbounded one."""
        window = self._head_tail + data
        ends = [i + len(end) for end in _HEAD_ENDS if (i := window.find(end)) >= 0]
        counted = len(data) if not ends else max(0, min(ends) - len(self._head_tail))
        self._head_bytes += counted
        self._head_tail = window[-3:]
        return self._head_bytes > self.max_header_bytes

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.max_headers:
            self._refuse(431, HEADERS_TOO_LARGE, too_many_message(self.max_headers))
            raise _Refused  # httptools stops parsing; send_400_response stays quiet
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cancel_head_timer()
        self._head_bytes, self._head_tail, self._header_count = 0, b"", 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_seen, self._bodyless_bytes = True, 0
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True  # the next request on this connection starts its head
        self._bodyless_bytes = 0
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self._refused or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head waits behind a response still being written (a stream):
            # bounded by that response, so wait again rather than cut it off.
            self._head_timer = self.loop.call_later(
                self.header_timeout_seconds, self._head_timed_out
            )
            return
        message = f"request headers not received within {self.header_timeout_seconds:g} s"
        self._refuse(408, HEADER_TIMEOUT, message)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:
            super().send_400_response(msg)

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._refused = True
        self._cancel_head_timer()
        transport = self.transport
        if self.cycle is not None and not self.cycle.response_complete:
            transport.close()  # an earlier pipelined response is still being written
            return
        error = {"code": code, "message": message, "request_id": uuid.uuid4().hex}
        body = json.dumps({"error": error}).encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        )
        transport.write(head.encode("ascii") + body)
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, transport.close)
        else:
            transport.close()


def bounded_http_protocol(settings: Settings) -> Callable[..., HttpToolsProtocol]:
    """The protocol factory for uvicorn's `http=` with the configured limits: a
    `functools.partial` of the class, which pickles (uvicorn sends its config to each
    worker process), where a class made on the fly would not."""
    return functools.partial(
        BoundedHttpToolsProtocol,
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        header_timeout_seconds=settings.header_timeout_seconds,
    )

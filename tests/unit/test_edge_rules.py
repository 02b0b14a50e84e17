"""The pure rules of the HTTP edge: which local addresses are loopback, which request
ids are kept. (Served behaviour: tests/integration/test_http_edge.py and
test_auth_open_mode.py.)"""

from __future__ import annotations

import pytest

from agent_server.api.auth import arrived_locally, is_loopback
from agent_server.api.request_id import is_safe_request_id


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),  # IPv4-mapped, on a dual-stack socket
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.0.2.2", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("server", "local"),
    [
        (("127.0.0.1", 8000), True),
        (("192.0.2.2", 8000), False),
        (("/run/agent.sock", None), True),  # Unix domain socket
        (None, True),
        (["::1", 8000], True),
    ],
)
def test_arrived_locally(server: object, local: bool) -> None:
    assert arrived_locally(server) is local


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("my-trace-123", True),
        ("a", True),
        ("A.b_c:d-9", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("with space", False),
        ("new\nline", False),
        ("tab\t", False),
        ('quote"', False),
        ("ünicode", False),
        ("semi;colon", False),
    ],
)
def test_is_safe_request_id(value: str, kept: bool) -> None:
    assert is_safe_request_id(value) is kept

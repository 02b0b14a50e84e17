"""`WORKERS`: what the supervisor checks and hands to its worker processes (no I/O)."""

from __future__ import annotations

import pickle

import pytest

from agent_server.api.http_limits import BoundedHttpToolsProtocol, bounded_http_protocol
from agent_server.api.workers import WorkersNeedRedis, check_workers, worker_environment
from agent_server.config import Settings


def test_more_than_one_worker_needs_redis() -> None:
    with pytest.raises(WorkersNeedRedis, match="WORKERS=3 needs REDIS_URL"):
        check_workers(Settings(_env_file=None, workers=3, redis_url=None))
    check_workers(Settings(_env_file=None, workers=3, redis_url="redis://127.0.0.1:6379/0"))
    check_workers(Settings(_env_file=None, workers=1, redis_url=None))


def test_workers_is_bounded() -> None:
    assert Settings(_env_file=None).workers == 1
    for bad in (0, 65):
        with pytest.raises(ValueError):
            Settings(_env_file=None, workers=bad)


def test_the_protocol_factory_pickles_with_its_limits() -> None:
    """uvicorn pickles its config to start each worker: the parser limits must travel."""
    settings = Settings(
        _env_file=None, max_header_bytes=1234, max_headers=17, header_timeout_seconds=3.5
    )
    factory = pickle.loads(pickle.dumps(bounded_http_protocol(settings)))
    assert factory.func is BoundedHttpToolsProtocol
    assert factory.keywords == {
        "max_header_bytes": 1234,
        "max_headers": 17,
        "header_timeout_seconds": 3.5,
    }


def test_workers_get_the_command_lines_host_and_port() -> None:
    settings = Settings(_env_file=None, host="0.0.0.0", port=8123)
    assert worker_environment(settings) == {"HOST": "0.0.0.0", "PORT": "8123"}


def test_a_bad_setting_is_named_not_a_traceback() -> None:
    from pydantic import ValidationError

    from agent_server.cli import settings_error

    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None, workers=0, port="x")  # type: ignore[arg-type]
    message = settings_error(caught.value)
    assert message.splitlines()[0] == "agent-server: invalid settings:"
    assert "  WORKERS: Input should be greater than or equal to 1 (got 0)" in message
    assert "  PORT: " in message and "(got 'x')" in message

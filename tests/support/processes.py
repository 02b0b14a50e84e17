"""agent-server as a real process (`python -m agent_server.cli serve`), for tests
that need separate replicas or signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.servers import free_port


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def base_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    data_dir.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'agent.db'}",
        "CHECKPOINT_DB_PATH": str(data_dir / "cp.db"),
        "KNOWLEDGE_DB_PATH": str(data_dir / "kb.db"),
        "OPENROUTER_API_KEY": "",
        "AGENT_API_KEYS": "",
        "WEATHER_GEOCODING_URL": "http://127.0.0.1:9/unreachable",
        "WEATHER_FORECAST_URL": "http://127.0.0.1:9/unreachable",
        "LOG_FORMAT": "json",
        **overrides,
    }


@contextmanager
def server_process(
    env: dict[str, str],
    log: Path,
    *,
    timeout: float = 30.0,
    command: Callable[[int], list[str]] | None = None,
) -> Iterator[ServerProcess]:
    """Start a server on a free port, wait for /healthz on loopback, stop it after.
    `command(port)` replaces `python -m agent_server.cli serve --port <port>` (another
    way of running the app, e.g. uvicorn's factory on every address)."""
    port = free_port()
    argv = (
        command(port)
        if command is not None
        else [sys.executable, "-m", "agent_server.cli", "serve", "--port", str(port)]
    )
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{server.output()}")
            try:
                if httpx.get(f"{server.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{server.output()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

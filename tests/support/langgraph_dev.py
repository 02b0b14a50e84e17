"""`langgraph dev` (the reference LangGraph Platform server) as a test subprocess.

Shared by the smoke test of the repo's graph under the CLI and by the Agent Protocol
acceptance suite, which runs against it with `AP_TARGET=reference` to check that the
suite itself is right. Offline by default: no tracing, no version check, no analytics,
the weather tool pointed at a closed port, data in a temp dir.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
# The venv's own console script; no `.resolve()`: that would follow the python symlink
# out of the venv.
LANGGRAPH = Path(sys.executable).parent / "langgraph"
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
# Port 9 (discard) is closed: a weather call would fail at once instead of going online.
UNREACHABLE_URL = "http://127.0.0.1:9/unreachable"


def log_tail(log_path: Path, limit: int = 12000) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else "<no log>"
    return text[-limit:]


def config_arg(tmp_path: Path) -> str:
    """The repo's `langgraph.json`, unless a developer `.env` sits next to it.

    `langgraph dev` loads the config's `env` file (relative to the CWD) and lets its
    values *override* the process environment, so a local `.env` could send a test
    online or into `./data/`. In that case use an identical config without the env file.
    Graph and dependency paths are resolved against the CWD (the repo root) either way.
    """
    if not (REPO_ROOT / ".env").exists():
        return "langgraph.json"
    derived = json.loads((REPO_ROOT / "langgraph.json").read_text())
    derived["env"] = {}
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(derived))
    return str(path)


def server_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """The CLI's environment: offline, data under `tmp_path`, then `overrides`
    (e.g. `OPENROUTER_API_KEY`/`OPENROUTER_BASE_URL` for a fake upstream)."""
    env = dict(os.environ)
    for key in ("OPENROUTER_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"):
        env.pop(key, None)
    env.update(
        {
            # An empty key also beats a developer `.env` read by pydantic-settings.
            "OPENROUTER_API_KEY": "",
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "LANGGRAPH_CLI_NO_ANALYTICS": "1",
            "LANGGRAPH_NO_VERSION_CHECK": "true",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'agent.db'}",
            "CHECKPOINT_DB_PATH": str(tmp_path / "checkpoints.db"),
            "KNOWLEDGE_DB_PATH": str(tmp_path / "knowledge.db"),
            "WEATHER_GEOCODING_URL": UNREACHABLE_URL,
            "WEATHER_FORECAST_URL": UNREACHABLE_URL,
            "PYTHONUNBUFFERED": "1",
            "LOG_COLOR": "false",  # langgraph-api's logs, plain text for failure messages
        }
    )
    env.update(overrides)
    return env


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    for sig, timeout in ((signal.SIGTERM, STOP_TIMEOUT_SECONDS), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    with httpx.Client(timeout=2.0) as http:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"`langgraph dev` exited with {proc.returncode} before serving:\n"
                    f"{log_tail(log_path)}"
                )
            try:
                if http.get(f"{url}/ok").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"`langgraph dev` not ready at {url}/ok after {READY_TIMEOUT_SECONDS:.0f}s:\n"
                    f"{log_tail(log_path)}"
                )
            time.sleep(0.2)


@contextmanager
def langgraph_dev(
    tmp_path: Path, *, env: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()
) -> Iterator[str]:
    """Start `langgraph dev` on a free port, yield its base URL, always stop it.

    Its log goes to `tmp_path/langgraph-dev.log` and is printed on exit (pytest shows
    it only for a failing test)."""
    if not LANGGRAPH.is_file() or not os.access(LANGGRAPH, os.X_OK):
        pytest.fail(
            f"`langgraph` executable not found at {LANGGRAPH}; "
            "install the dev extras: pip install -e '.[dev]' (langgraph-cli[inmem])"
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "langgraph-dev.log"
    command = [
        str(LANGGRAPH),
        "dev",
        "--config",
        config_arg(tmp_path),
        "--no-browser",
        "--no-reload",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *extra_args,
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env if env is not None else server_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: teardown kills every child
        )
    try:
        wait_ready(proc, url, log_path)
        yield url
    finally:
        stop(proc)
        print(f"--- langgraph dev log ({log_path}) ---\n{log_tail(log_path)}")

"""`langgraph dev` serves the repo's graph: the real CLI as a subprocess, offline,
driven over HTTP by `langgraph_sdk`.

Runs from the repo root with the repo's own `langgraph.json`, exactly like
`make studio`. Side effect: the in-memory runtime pickles its state into
`./.langgraph_api/` (the CWD; not configurable, gitignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client

from tests.support.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
# The venv's own console script; no `.resolve()`: that would follow the python symlink
# out of the venv.
LANGGRAPH = Path(sys.executable).parent / "langgraph"
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
# Port 9 (discard) is closed: a weather call would fail at once instead of going online.
UNREACHABLE_URL = "http://127.0.0.1:9/unreachable"


def _log_tail(log_path: Path, limit: int = 12000) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else "<no log>"
    return text[-limit:]


def _config_arg(tmp_path: Path) -> str:
    """The repo's `langgraph.json`, unless a developer `.env` sits next to it.

    `langgraph dev` loads the config's `env` file (relative to the CWD) and lets its
    values *override* the process environment, so a local `.env` could send this test
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


def _server_env(tmp_path: Path) -> dict[str, str]:
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
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
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


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    with httpx.Client(timeout=2.0) as http:
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"`langgraph dev` exited with {proc.returncode} before serving:\n"
                    f"{_log_tail(log_path)}"
                )
            try:
                if http.get(f"{url}/ok").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"`langgraph dev` not ready at {url}/ok after {READY_TIMEOUT_SECONDS:.0f}s:\n"
                    f"{_log_tail(log_path)}"
                )
            time.sleep(0.2)


@pytest.fixture
def langgraph_dev(tmp_path: Path) -> Iterator[str]:
    """Start `langgraph dev` on a free port, yield its base URL, always stop it."""
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
        _config_arg(tmp_path),
        "--no-browser",
        "--no-reload",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=_server_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: teardown kills every child
        )
    try:
        _wait_ready(proc, url, log_path)
        yield url
    finally:
        _stop(proc)
        # Shown by pytest only when the test fails.
        print(f"--- langgraph dev log ({log_path}) ---\n{_log_tail(log_path)}")


def _message_events(events: list[Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(part.data[0], part.data[1]) for part in events if part.event == "messages"]


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_langgraph_dev_serves_agent_graph(langgraph_dev: str) -> None:
    async with get_client(url=langgraph_dev, timeout=30.0) as client:
        # 1. The graph from langgraph.json is registered as an assistant.
        assistants = await client.assistants.search(graph_id="agent")
        assert assistants, "no assistant for graph_id='agent'"
        assistant_id = assistants[0]["assistant_id"]

        # 2. Its topology is the agent loop.
        drawn = await client.assistants.get_graph(assistant_id)
        node_ids = {node["id"] for node in drawn["nodes"]}
        assert {"model", "tools", "persist"} <= node_ids, node_ids

        # 3-4. A streamed run on a fresh thread.
        thread = await client.threads.create()
        thread_id = thread["thread_id"]
        try:
            events = [
                part
                async for part in client.runs.stream(
                    thread_id,
                    assistant_id,
                    input={"messages": [{"role": "user", "content": "Calculate 10 * 20"}]},
                    stream_mode="messages-tuple",
                )
            ]
            names = [part.event for part in events]
            assert "error" not in names, [part for part in events if part.event == "error"]
            assert names[0] == "metadata", names
            run_id = events[0].data["run_id"]

            messages = _message_events(events)
            assert messages, names
            ai_chunks = [
                (message, meta)
                for message, meta in messages
                if message["type"] in ("AIMessageChunk", "ai")
            ]
            assert ai_chunks, messages
            assert {meta["langgraph_node"] for _, meta in ai_chunks} == {"model"}
            # Offline, never an upstream model.
            model_names = {
                message["response_metadata"].get("model_name")
                for message, _ in ai_chunks
                if message["response_metadata"].get("model_name")
            }
            assert model_names == {"offline"}, model_names
            streamed_calls = [call for message, _ in ai_chunks for call in message["tool_calls"]]
            assert [call["name"] for call in streamed_calls] == ["calculator"]
            text = "".join(str(message["content"]) for message, _ in ai_chunks)
            assert "200" in text
            assert text == "10 * 20 = 200"
            tool_events = [(m, meta) for m, meta in messages if m["type"] == "tool"]
            assert [(m["name"], meta["langgraph_node"]) for m, meta in tool_events] == [
                ("calculator", "tools")
            ]

            run = await client.runs.get(thread_id, run_id)
            assert run["status"] == "success", run

            # 5. The thread's final state holds the whole turn.
            state = await client.threads.get_state(thread_id)
            assert state["next"] == []
            history = state["values"]["messages"]
            assert [m["type"] for m in history] == ["human", "ai", "tool", "ai"]
            final = history[-1]
            assert final["content"] == "10 * 20 = 200"
            assert final["tool_calls"] == []
            tool_message = history[2]
            assert tool_message["name"] == "calculator"
            assert tool_message["status"] == "success"
            assert tool_message["tool_call_id"] == history[1]["tool_calls"][0]["id"]
            assert json.loads(tool_message["content"])["result"] == 200
        finally:
            # `.langgraph_api/` in the repo persists threads across restarts (and shows them
            # in Studio): leave nothing behind, without masking the real failure.
            with contextlib.suppress(httpx.HTTPError):
                await client.threads.delete(thread_id)

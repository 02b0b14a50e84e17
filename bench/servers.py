"""Subprocesses under test: our server, the fake upstream, a bare proxy, `langgraph dev`.

Each runs in its own process group (so teardown reaches every child), on a free
loopback port, with its output in a log file whose tail is shown if it fails to
start. Teardown is always in a `finally`: SIGTERM to the group, SIGKILL if it
lingers. Separate processes, not threads in the bench process: a server sharing
the client's interpreter would share its GIL and event loop, and measure both.

Also here: the throwaway Redis prefix and PostgreSQL database a variant needs,
both removed afterwards (SCAN + DEL on our prefix only, DROP DATABASE ... FORCE).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
SERVER_PYTHON = os.path.abspath(os.environ.get("BENCH_SERVER_PYTHON") or PYTHON)
"""The interpreter our server runs under. `make bench` points it at `.venv-server`, which
holds the package and its runtime dependencies only, as a deployment would: the dev
tools in `.venv` bring libraries our server then imports too (schemathesis's `rich`,
which `structlog` imports when present; langgraph-api's OpenTelemetry SDK, which
redis-py's observability hooks import when present), ~8 MB of RSS no deployment carries.
Made absolute because the server runs in a temp dir of its own."""
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
UNREACHABLE_URL = "http://127.0.0.1:9/unreachable"
"""Port 9 (discard) is closed: a stray weather call fails at once, never goes online."""
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _raise_fd_limit() -> None:
    """Hundreds of concurrent streams need more descriptors than a default 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@dataclass
class Process:
    """A started subprocess in its own process group."""

    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return "<no log>"

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        for sig, timeout in ((signal.SIGTERM, STOP_TIMEOUT_SECONDS), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                continue


@contextmanager
def spawn(
    name: str,
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    log_dir: Path,
    url: str,
    ready_path: str,
    config: dict[str, Any] | None = None,
) -> Iterator[Process]:
    """Start `argv`, wait until `url + ready_path` answers 200, yield, always stop."""
    _raise_fd_limit()  # inherited by the child
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process = Process(name, popen, url, log_path, config or {})
    try:
        _wait_ready(process, url + ready_path)
        yield process
    finally:
        process.stop()


def _wait_ready(process: Process, url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    with httpx.Client(timeout=2.0) as http:
        while True:
            if process.popen.poll() is not None:
                raise RuntimeError(
                    f"{process.name} exited with {process.popen.returncode} before serving:\n"
                    f"{process.log_tail()}"
                )
            try:
                if http.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{process.name} not ready at {url}:\n{process.log_tail()}")
            time.sleep(0.05)


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    for key in ("OPENROUTER_API_KEY", "LANGSMITH_API_KEY", "LANGCHAIN_API_KEY", "REDIS_URL"):
        env.pop(key, None)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
        }
    )
    return env


def data_env(data_dir: Path) -> dict[str, str]:
    """Every file the server writes lives in `data_dir`."""
    return {
        "DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'agent.db'}",
        "CHECKPOINT_DB_PATH": str(data_dir / "checkpoints.db"),
        "KNOWLEDGE_DB_PATH": str(data_dir / "knowledge.db"),
    }


@contextmanager
def agent_server(
    log_dir: Path,
    *,
    name: str = "agent-server",
    overrides: dict[str, str] | None = None,
    entry: list[str] | None = None,
) -> Iterator[Process]:
    """`python -m agent_server.cli serve` on a free port, offline by default, data in a
    fresh temp dir, auth open (loopback), rate limit out of the way, warnings only.
    `overrides` wins (Redis, Postgres, an upstream). Runs in the temp dir so a
    developer's `.env` in the repo cannot change the configuration. `entry` replaces
    `-m agent_server.cli` (e.g. a script that patches something first, to measure a
    proposed fix before it is made); it gets the same `serve --port P` arguments."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        data = Path(tmp)
        env = _base_env()
        env.update(data_env(data))
        env.update(
            {
                "OPENROUTER_API_KEY": "",
                "AGENT_API_KEYS": "",
                "RATE_LIMIT_PER_MINUTE": "100000000",
                "LOG_LEVEL": "warning",
                "SHUTDOWN_GRACE_SECONDS": "2",
                "WEATHER_GEOCODING_URL": UNREACHABLE_URL,
                "WEATHER_FORECAST_URL": UNREACHABLE_URL,
            }
        )
        env.update(overrides or {})
        # The schema is migrated first, as a deployment's release step does: a server
        # that finds it current never loads Alembic (10 MB of RSS it would carry).
        subprocess.run(
            [SERVER_PYTHON, "-m", "agent_server.cli", "db", "upgrade"],
            cwd=data,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        argv = [SERVER_PYTHON, *(entry or ["-m", "agent_server.cli"]), "serve", "--port", str(port)]
        shown = {k: v for k, v in env.items() if k in SHOWN_SETTINGS or k in (overrides or {})}
        with spawn(
            name,
            argv,
            env=env,
            cwd=data,
            log_dir=log_dir,
            url=f"http://127.0.0.1:{port}",
            ready_path="/healthz",
            config={
                "python": SERVER_PYTHON,
                "argv": argv[1:],
                "env": _redact(shown),
                "data_dir": str(data),
            },
        ) as process:
            yield process


SHOWN_SETTINGS = {
    "DATABASE_URL",
    "CHECKPOINT_DB_PATH",
    "OPENROUTER_API_KEY",
    "OPENROUTER_BASE_URL",
    "AGENT_MODELS",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "RATE_LIMIT_PER_MINUTE",
    "LOG_LEVEL",
}


def _redact(env: dict[str, str]) -> dict[str, str]:
    return {k: ("<set>" if k.endswith("API_KEY") and v else v) for k, v in env.items()}


@contextmanager
def fake_upstream(
    log_dir: Path,
    *,
    first_token_latency: float,
    tokens_per_second: float,
    words: int,
    name: str = "fake-upstream",
) -> Iterator[Process]:
    """`python -m tests.support.fake_upstream` (OpenAI wire format, fixed text reply)."""
    port = free_port()
    argv = [
        PYTHON,
        "-m",
        "tests.support.fake_upstream",
        "--port",
        str(port),
        "--first-token-latency",
        str(first_token_latency),
        "--tokens-per-second",
        str(tokens_per_second),
        "--words",
        str(words),
    ]
    with spawn(
        name,
        argv,
        env=_base_env(),
        cwd=REPO_ROOT,
        log_dir=log_dir,
        url=f"http://127.0.0.1:{port}",
        ready_path="/healthz",
        config={
            "first_token_latency_s": first_token_latency,
            "tokens_per_second": tokens_per_second,
            "words": words,
        },
    ) as process:
        yield process


@contextmanager
def passthrough_proxy(log_dir: Path, upstream_url: str) -> Iterator[Process]:
    """`python -m bench.proxy` in front of `upstream_url`, under the server's interpreter
    (the same uvicorn, Starlette and httpx builds our server runs on)."""
    port = free_port()
    argv = [SERVER_PYTHON, "-m", "bench.proxy", "--port", str(port), "--upstream", upstream_url]
    with spawn(
        "passthrough-proxy",
        argv,
        env=_base_env(),
        cwd=REPO_ROOT,
        log_dir=log_dir,
        url=f"http://127.0.0.1:{port}",
        ready_path="/healthz",
        config={"python": SERVER_PYTHON, "argv": argv[1:]},
    ) as process:
        yield process


@contextmanager
def langgraph_dev(log_dir: Path) -> Iterator[Process]:
    """`langgraph dev` serving the repo's graph, offline, state in a temp dir.

    The config is the repo's `langgraph.json` with absolute paths and no `.env`
    (a developer's `.env` would override our environment), run from a temp dir so
    the in-memory runtime's `.langgraph_api/` pickles land there, not in the repo.
    """
    langgraph = Path(PYTHON).parent / "langgraph"
    if not langgraph.is_file():
        raise RuntimeError(f"`langgraph` not found at {langgraph} (pip install 'langgraph-cli')")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-langgraph-") as tmp:
        data = Path(tmp)
        config = json.loads((REPO_ROOT / "langgraph.json").read_text())
        config["dependencies"] = [str(REPO_ROOT)]
        config["graphs"] = {
            graph: str(REPO_ROOT / path.removeprefix("./"))
            for graph, path in config["graphs"].items()
        }
        config["env"] = {}
        (data / "langgraph.json").write_text(json.dumps(config))
        env = _base_env()
        env.update(data_env(data))
        env.update(
            {
                "OPENROUTER_API_KEY": "",
                "LANGGRAPH_CLI_NO_ANALYTICS": "1",
                "LANGGRAPH_NO_VERSION_CHECK": "true",
                "LOG_LEVEL": "warning",
                "LOG_COLOR": "false",
                "WEATHER_GEOCODING_URL": UNREACHABLE_URL,
                "WEATHER_FORECAST_URL": UNREACHABLE_URL,
            }
        )
        argv = [
            str(langgraph),
            "dev",
            "--config",
            str(data / "langgraph.json"),
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        with spawn(
            "langgraph-dev",
            argv,
            env=env,
            cwd=data,
            log_dir=log_dir,
            url=f"http://127.0.0.1:{port}",
            ready_path="/ok",
            config={"argv": argv[1:], "config": config},
        ) as process:
            yield process


# --- services a variant borrows ------------------------------------------------------


def redis_available(url: str) -> str | None:
    """None if Redis answers PING, else why not."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@contextmanager
def redis_prefix(url: str) -> Iterator[str]:
    """A unique `REDIS_KEY_PREFIX`; afterwards every key containing it is deleted
    (SCAN + DEL in batches: never FLUSHALL, never anyone else's keys)."""
    prefix = f"bench-{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        redis_delete_prefix(url, prefix)


def redis_keys(url: str, prefix: str, limit: int = 100_000) -> list[str]:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys: list[str] = []
        for key in client.scan_iter(match=f"*{prefix}*", count=1000):
            keys.append(key.decode())
            if len(keys) >= limit:
                break
        return keys
    finally:
        client.close()


def redis_delete_prefix(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"*{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(client.delete(*batch))
    finally:
        client.close()
    return deleted


@contextmanager
def postgres_database(admin_dsn: str = POSTGRES_ADMIN_DSN) -> Iterator[str]:
    """A fresh database (created and dropped with asyncpg as admin on the `test`
    database); yields its SQLAlchemy async URL."""
    import asyncio

    import asyncpg

    name = f"agent_bench_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(admin_dsn, timeout=3)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield f"{base}/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def postgres_available(admin_dsn: str = POSTGRES_ADMIN_DSN) -> str | None:
    import asyncio

    import asyncpg

    async def ping() -> None:
        connection = await asyncpg.connect(admin_dsn, timeout=3)
        await connection.close()

    try:
        asyncio.run(ping())
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None

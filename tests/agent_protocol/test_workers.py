"""Ours only: `agent-server serve --workers 2` as a real process on one Redis prefix.
Both workers serve the one port, a run one worker executes is refused to, joined and
seen by connections the other accepts, `/metrics` adds the workers up, a killed
worker is replaced (and its live gauges dropped), SIGTERM stops them all, and
`WORKERS` > 1 without Redis refuses to start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError
from prometheus_client.multiprocess import MultiProcessCollector

from tests.agent_protocol.conftest import (
    FAST,
    FAST_REPLY,
    GRAPH_ID,
    MODELS,
    SLOW,
    SLOW_REPLY,
    ask,
    last_ai_text,
    ours_only,
    wait_status,
)
from tests.conftest import ALICE
from tests.support.fake_upstream import FakeUpstream
from tests.support.processes import ServerProcess, base_env, server_process
from tests.support.redis import delete_prefix, require_redis, unique_prefix

pytestmark = ours_only
WAIT_ROUTE = "/threads/{thread_id}/runs/wait"


def env_for(tmp: Path, upstream: FakeUpstream, redis_url: str, prefix: str, **extra: str):  # type: ignore[no-untyped-def]
    return base_env(
        tmp / "data",
        REDIS_URL=redis_url,
        REDIS_KEY_PREFIX=prefix,
        AGENT_API_KEYS=ALICE,
        OPENROUTER_API_KEY="fake-upstream-key",
        OPENROUTER_BASE_URL=upstream.base_url,
        AGENT_MODELS=",".join(MODELS),
        RATE_LIMIT_PER_MINUTE="100000",
        LOG_LEVEL="warning",
        SHUTDOWN_GRACE_SECONDS="2",
        **extra,
    )


def workers_command(port: int) -> list[str]:
    serve = [sys.executable, "-m", "agent_server.cli", "serve"]
    return [*serve, "--port", str(port), "--workers", "2"]


def children(pid: int) -> set[int]:
    """The supervisor's worker processes (multiprocessing also starts a resource
    tracker, which is not a worker)."""
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def wait_for_workers(pid: int, count: int, *, within: float = 30.0) -> set[int]:
    deadline = time.monotonic() + within
    while True:
        workers = children(pid)
        if len(workers) == count:
            return workers
        if time.monotonic() > deadline:
            raise AssertionError(f"supervisor {pid} has workers {workers}, wanted {count}")
        time.sleep(0.1)


def samples_of(directory: Path, pid: int, name: str, **labels: str) -> float:
    """One worker's value of a metric, read from its own prometheus-client files."""
    files = [str(f) for f in directory.glob(f"*_{pid}.db")]
    total = 0.0
    for metric in MultiProcessCollector.merge(files, accumulate=True):
        for sample in metric.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def scraped(text: str, name: str, **labels: str) -> float:
    """A metric's value in a `/metrics` exposition (summed over label sets matching)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.fixture(scope="module")
def served(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, Path]]:
    redis_url = require_redis()
    prefix = unique_prefix("workers")
    tmp = tmp_path_factory.mktemp("workers")
    metrics = tmp / "metrics"
    env = env_for(tmp, upstream, redis_url, prefix, PROMETHEUS_MULTIPROC_DIR=str(metrics))
    try:
        with server_process(env, tmp / "server.log", command=workers_command) as server:
            wait_for_workers(server.process.pid, 2)
            yield server, metrics
    finally:
        delete_prefix(redis_url, prefix)


async def one_run(url: str) -> str:
    """`threads.create` + `runs.wait` on a connection of its own (so the kernel may
    hand it to either worker)."""
    async with get_client(url=url, api_key=ALICE, timeout=30) as sdk:
        thread = await sdk.threads.create()
        values = await sdk.runs.wait(thread["thread_id"], GRAPH_ID, input=ask(), context=FAST)
        return last_ai_text(values)


async def test_both_workers_serve_the_one_port(served: tuple[ServerProcess, Path]) -> None:
    server, metrics = served
    workers = wait_for_workers(server.process.pid, 2)

    def counts() -> dict[int, float]:
        return {
            pid: samples_of(metrics, pid, "agent_http_requests_total", route=WAIT_ROUTE)
            for pid in workers
        }

    answered = 0
    for _ in range(5):  # which worker accepts is the kernel's choice: give both a chance
        replies = await asyncio.gather(*(one_run(server.url) for _ in range(12)))
        assert replies == [FAST_REPLY] * 12
        answered += 12
        per_worker = counts()
        if all(count > 0 for count in per_worker.values()):
            break
    assert all(count > 0 for count in per_worker.values()), per_worker
    # A worker counts a request once its response has gone out, so the last few
    # may land just after the client read them: wait for every answered one.
    deadline = time.monotonic() + 10
    while sum(per_worker.values()) < answered and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        per_worker = counts()
    async with httpx.AsyncClient(headers={"x-api-key": ALICE}, timeout=10) as http:
        exposition = (await http.get(f"{server.url}/metrics")).text
    # every worker's samples in one scrape, whichever worker answered it
    total = scraped(exposition, "agent_http_requests_total", route=WAIT_ROUTE, status="200")
    assert total == sum(per_worker.values()) >= answered


async def test_a_run_is_shared_by_every_worker(served: tuple[ServerProcess, Path]) -> None:
    server, _ = served
    async with get_client(url=server.url, api_key=ALICE, timeout=30) as owner:
        thread = await owner.threads.create()
        tid = thread["thread_id"]
        run = await owner.runs.create(tid, GRAPH_ID, input=ask("slow"), context=SLOW)
        await wait_status(owner, tid, run["run_id"], ("running",))

    async def refused() -> bool:
        async with get_client(url=server.url, api_key=ALICE, timeout=30) as other:
            try:
                await other.runs.create(tid, GRAPH_ID, input=ask("no"), multitask_strategy="reject")
            except ConflictError:
                return True
            return False

    # fresh connections, some accepted by the worker that does not run it
    assert await asyncio.gather(*(refused() for _ in range(6))) == [True] * 6
    async with get_client(url=server.url, api_key=ALICE, timeout=30) as joiner:
        values = await joiner.runs.join(tid, run["run_id"])
        assert last_ai_text(values) == SLOW_REPLY
        assert (await joiner.threads.get(tid))["status"] == "idle"


async def test_a_killed_worker_is_replaced(served: tuple[ServerProcess, Path]) -> None:
    server, metrics = served
    workers = wait_for_workers(server.process.pid, 2)
    async with get_client(url=server.url, api_key=ALICE, timeout=30) as sdk:
        thread = await sdk.threads.create()
        tid = thread["thread_id"]
        run = await sdk.runs.create(tid, GRAPH_ID, input=ask("slow"), context=SLOW)
        await wait_status(sdk, tid, run["run_id"], ("running",))
    running = [pid for pid in workers if samples_of(metrics, pid, "agent_active_runs") == 1]
    assert len(running) == 1, [samples_of(metrics, pid, "agent_active_runs") for pid in workers]
    os.kill(running[0], signal.SIGKILL)  # mid-run: its live gauge says 1 as it dies

    deadline = time.monotonic() + 30
    while (now := children(server.process.pid)) == workers - {running[0]} or len(now) < 2:
        assert time.monotonic() < deadline, f"no replacement for {running[0]}: {now}"
        await asyncio.sleep(0.1)
    assert running[0] not in now
    # the scrape may come before the replacement is up: the dead worker's 1 must go anyway
    replies = await asyncio.gather(*(one_run(server.url) for _ in range(6)))
    assert replies == [FAST_REPLY] * 6
    async with httpx.AsyncClient(headers={"x-api-key": ALICE}, timeout=10) as http:
        exposition = (await http.get(f"{server.url}/metrics")).text
    assert scraped(exposition, "agent_active_runs") == 0  # the dead worker's 1 is gone


def test_sigterm_stops_every_worker(upstream: FakeUpstream, tmp_path: Path) -> None:
    redis_url = require_redis()
    prefix = unique_prefix("workers-stop")
    # no PROMETHEUS_MULTIPROC_DIR: the supervisor makes a private one (under TMPDIR)
    env = env_for(tmp_path, upstream, redis_url, prefix, TMPDIR=str(tmp_path))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        with server_process(env, tmp_path / "server.log", command=workers_command) as server:
            workers = wait_for_workers(server.process.pid, 2)
            assert asyncio.run(one_run(server.url)) == FAST_REPLY
            private = list(tmp_path.glob("agent-server-metrics-*"))
            assert len(private) == 1 and any(private[0].glob("counter_*.db"))
            server.process.send_signal(signal.SIGTERM)
            assert server.process.wait(timeout=30) == 0, server.output()
            assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
            assert not private[0].exists()
    finally:
        delete_prefix(redis_url, prefix)


def test_workers_without_redis_refuse_to_start(upstream: FakeUpstream, tmp_path: Path) -> None:
    env = base_env(tmp_path / "data", WORKERS="2")
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "agent_server.cli", "serve", "--port", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "WORKERS=2 needs REDIS_URL" in done.stderr


def test_a_bad_workers_value_is_a_clear_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent_server.cli", "serve", "--port", "9", "--workers", "0"],
        env=base_env(tmp_path / "data"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "WORKERS: Input should be greater than or equal to 1" in done.stderr
    assert "Traceback" not in done.stderr

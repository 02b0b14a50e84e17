"""Non-streaming turns over real HTTP against a served subprocess.

The same turn as the floor, sent as `POST /api/chat/message` by an
`httpx.AsyncClient` in the bench process (connection pool ≥ concurrency, so the
client never queues on its own pool). Per variant (embedded, Redis, Postgres),
workload (fresh session per turn, long sessions) and concurrency: turns/s,
latency percentiles, errors, and the server's CPU time per turn (psutil on the
server pid), which is less sensitive to machine noise than wall-clock rates.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import servers
from bench.common import EXPECTED, MESSAGE, TurnFn, Workload, cpu_seconds, drive, run_async

HTTP_TIMEOUT_SECONDS = 60.0
BENCH_WORKERS = 2
"""`WORKERS` of the `redis_workers` variant: one process per core of the 2-core bench box."""


def client(url: str, concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4
    )
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=HTTP_TIMEOUT_SECONDS)


def http_turn(http: httpx.AsyncClient) -> TurnFn:
    async def turn(session: str | None) -> str:
        body: dict[str, Any] = {"message": MESSAGE}
        if session is not None:
            body["session_id"] = session
        response = await http.post("/api/chat/message", json=body)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
        data = response.json()
        if data.get("response") != EXPECTED:
            raise RuntimeError(f"unexpected answer {data.get('response')!r}")
        return str(data["session_id"])

    return turn


def server_cpu(pid: int) -> float:
    """CPU seconds of the server process and its children (threads included)."""
    process = psutil.Process(pid)
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


async def measure_server(
    server: servers.Process,
    *,
    workloads: list[Workload],
    concurrencies: list[int],
    duration: float,
    warmup: float,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for workload in workloads:
        for concurrency in concurrencies:
            async with client(server.url, concurrency) as http:
                turn = http_turn(http)
                await drive(
                    turn,
                    concurrency=concurrency,
                    duration=warmup,
                    workload=workload,
                    whole_sessions=False,
                )
                server0, client0 = server_cpu(server.pid), cpu_seconds()
                result = await drive(
                    turn, concurrency=concurrency, duration=duration, workload=workload
                )
                server_s = server_cpu(server.pid) - server0
                client_s = cpu_seconds() - client0
            row = result.summary()
            row["server_cpu_ms_per_turn"] = 1000 * server_s / max(1, result.turns)
            row["client_cpu_ms_per_turn"] = 1000 * client_s / max(1, result.turns)
            row["server_cpu_utilisation"] = server_s / result.duration_s
            rows.append(row)
    return rows


@contextlib.contextmanager
def variant_server(
    variant: str,
    log_dir: Path,
    redis_url: str,
    *,
    entry: list[str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[servers.Process, dict[str, Any]]]:
    """Start the server configured for `variant`; yields it and facts about its config.
    Raises LookupError when a service the variant needs is unreachable."""
    facts: dict[str, Any] = {"variant": variant}
    with contextlib.ExitStack() as stack:
        overrides: dict[str, str] = {}
        prefix: str | None = None
        if variant in ("redis", "redis_postgres", "redis_workers"):
            if (why := servers.redis_available(redis_url)) is not None:
                raise LookupError(f"Redis unreachable at {redis_url}: {why}")
            prefix = stack.enter_context(servers.redis_prefix(redis_url))
            overrides.update({"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": prefix})
        if variant == "redis_workers":  # every core: `WORKERS` processes on the one port
            overrides["WORKERS"] = str(BENCH_WORKERS)
        if variant == "redis_postgres":
            if (why := servers.postgres_available()) is not None:
                raise LookupError(f"PostgreSQL unreachable: {why}")
            overrides["DATABASE_URL"] = stack.enter_context(servers.postgres_database())
        overrides.update(extra_env or {})
        server = stack.enter_context(
            servers.agent_server(
                log_dir, name=f"agent-server-{variant}", overrides=overrides, entry=entry
            )
        )
        facts["config"] = server.config
        try:
            yield server, facts
        finally:
            # Record what actually held the hot state: Redis keys under our prefix
            # and/or the embedded SQLite checkpoint file.
            checkpoint_file = Path(server.config["data_dir"]) / "checkpoints.db"
            facts["checkpoint_sqlite_bytes"] = (
                checkpoint_file.stat().st_size if checkpoint_file.exists() else 0
            )
            if prefix is not None:
                families: dict[str, int] = {}
                keys = servers.redis_keys(redis_url, prefix)
                for key in keys:
                    family = _key_family(key, prefix)
                    families[family] = families.get(family, 0) + 1
                facts["redis_keys"] = len(keys)
                facts["redis_key_families"] = dict(sorted(families.items(), key=lambda kv: -kv[1]))
            facts["hot_state"] = _hot_state(facts)


def _key_family(key: str, prefix: str) -> str:
    """`thread:cp` for a checkpointer key `<prefix>:{<thread>}:cp`, else the first
    segment after the prefix (`limits`, `lock`, `cooldown`, ...)."""
    rest = key.split(prefix, 1)[-1].lstrip(":")
    if rest.startswith("{") and "}:" in rest:
        return "thread:" + rest.rsplit("}:", 1)[1]
    return rest.split(":", 1)[0]


def _hot_state(facts: dict[str, Any]) -> str:
    """Which checkpointer the server used, judged by what it wrote."""
    if any(family.startswith("thread:") for family in facts.get("redis_key_families", {})):
        return "redis (AsyncRedisSaver)"
    if facts.get("checkpoint_sqlite_bytes", 0) > 0:
        return "sqlite (embedded AsyncSqliteSaver)"
    return "unknown"


def run_variants(
    *,
    variants: list[str],
    workloads: list[Workload],
    concurrencies: list[int],
    duration: float,
    warmup: float,
    log_dir: Path,
    redis_url: str,
) -> dict[str, Any]:
    report: dict[str, Any] = {"variants": {}}
    for variant in variants:
        try:
            with variant_server(variant, log_dir, redis_url) as (server, facts):
                facts["rows"] = run_async(
                    measure_server(
                        server,
                        workloads=workloads,
                        concurrencies=concurrencies,
                        duration=duration,
                        warmup=warmup,
                    )
                )
        except LookupError as exc:
            facts = {"variant": variant, "skipped": str(exc)}
        report["variants"][variant] = facts
    return report

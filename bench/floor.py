"""The floor: the product's graph and turn, in-process, no HTTP, InMemorySaver.

Built exactly as the app builds it (`build_resources` → `deps` → `build_graph`),
so the only differences from a served turn are what the service adds around the
graph: HTTP, auth, limits, locks, session rows, the real checkpointer. The
persist node still writes its SQL row (SQLite in a temp dir): that is part of the
graph. Every other figure is a ratio to this one, measured in the same run.

Optionally the same in-process graph on the production checkpointers (SQLite
file, Redis) is measured too: the gap between those rows and the floor is what
the checkpointer costs, the gap between them and HTTP is what the service costs.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

from bench.common import EXPECTED, MESSAGE, TurnFn, Workload, cpu_seconds, drive


def bench_settings(data_dir: Path, **overrides: Any) -> Any:
    """Settings for an offline, in-process run with every data file in `data_dir`."""
    from agent_server.config import Settings

    values: dict[str, Any] = {
        "openrouter_api_key": "",
        "database_url": f"sqlite+aiosqlite:///{data_dir / 'agent.db'}",
        "checkpoint_db_path": data_dir / "checkpoints.db",
        "knowledge_db_path": data_dir / "knowledge.db",
        "agent_api_keys": [],
        "log_level": "warning",
        **overrides,
    }
    # `_env_file=None`: a developer's .env must not change what the floor measures.
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@asynccontextmanager
async def saver_for(
    kind: str, data_dir: Path, redis_url: str
) -> AsyncIterator[BaseCheckpointSaver]:
    if kind == "inmemory":
        yield InMemorySaver()
        return
    if kind == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(data_dir / "cp.db")) as saver:
            await saver.setup()
            yield saver
        return
    if kind == "redis":
        from redis.asyncio import Redis

        from agent_server.persistence.redis_saver import AsyncRedisSaver

        prefix = f"bench-{uuid.uuid4().hex[:12]}"
        client = Redis.from_url(redis_url)
        try:
            yield AsyncRedisSaver(client, key_prefix=prefix, ttl_seconds=3600)
        finally:
            keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i : i + 500])
            await client.aclose()
        return
    raise ValueError(kind)


@asynccontextmanager
async def in_process_turn(saver_kind: str, redis_url: str) -> AsyncIterator[TurnFn]:
    """A `TurnFn` that invokes the app's graph directly."""
    from agent_server.graph.builder import build_graph
    from agent_server.graph.state import FLAGS_KEY, RunFlags, RunOptions, new_turn
    from agent_server.resources import build_resources

    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        settings = bench_settings(Path(tmp))
        resources = build_resources(settings)
        # Invoke the graph as the service does: same checkpoint durability.
        durability = getattr(settings, "checkpoint_durability", None)
        extra: dict[str, Any] = {"durability": durability} if durability else {}
        try:
            await resources.prepare()
            async with saver_for(saver_kind, Path(tmp), redis_url) as saver:
                graph = build_graph(resources.deps, checkpointer=saver)
                # As the service does: a thread it just created has no past to restore.
                first, later = RunFlags(new_session=True, no_past=True), RunFlags()

                async def turn(session: str | None) -> str:
                    thread_id = session or str(uuid.uuid4())
                    turn_id = str(uuid.uuid4())
                    final = await graph.ainvoke(
                        new_turn(MESSAGE, turn_id),
                        {
                            "configurable": {
                                "thread_id": thread_id,
                                FLAGS_KEY: first if session is None else later,
                            },
                            "run_id": turn_id,
                        },
                        context=RunOptions(),
                        **extra,
                    )
                    response = final["last_turn"]["response"]
                    if response != EXPECTED:
                        raise RuntimeError(f"unexpected answer {response!r}")
                    return thread_id

                yield turn
        finally:
            await resources.aclose()


async def measure(
    *,
    workloads: list[Workload],
    concurrencies: list[int],
    duration: float,
    warmup: float,
    savers: list[str],
    redis_url: str,
) -> dict[str, Any]:
    """Turns/s of the in-process graph for each saver, workload and concurrency."""
    rows: list[dict[str, Any]] = []
    for saver_kind in savers:
        try:
            async with in_process_turn(saver_kind, redis_url) as turn:
                for workload in workloads:
                    for concurrency in concurrencies:
                        await drive(
                            turn,
                            concurrency=concurrency,
                            duration=warmup,
                            workload=workload,
                            whole_sessions=False,
                        )
                        cpu0 = cpu_seconds()
                        result = await drive(
                            turn, concurrency=concurrency, duration=duration, workload=workload
                        )
                        cpu = cpu_seconds() - cpu0
                        row = {"saver": saver_kind, **result.summary()}
                        row["cpu_ms_per_turn"] = 1000 * cpu / max(1, result.turns)
                        rows.append(row)
        except Exception as exc:
            # Only the floor itself is mandatory; a missing Redis skips its row.
            if saver_kind == "inmemory":
                raise
            rows.append({"saver": saver_kind, "skipped": f"{type(exc).__name__}: {exc}"})
    from agent_server.config import Settings

    field = Settings.model_fields.get("checkpoint_durability")
    return {
        "durability": field.default if field is not None else "langgraph default",
        "what": "the app's graph in-process (build_resources → build_graph), no HTTP; "
        "persist writes to SQLite in a temp dir; same checkpoint durability as the service",
        "message": MESSAGE,
        "rows": rows,
    }


def floor_rate(report: dict[str, Any], workload: str, concurrency: int = 1) -> float | None:
    """The floor's turns/s (InMemorySaver) for a workload at a concurrency."""
    with contextlib.suppress(StopIteration):
        row = next(
            r
            for r in report["rows"]
            if r.get("saver") == "inmemory"
            and r.get("workload") == workload
            and r.get("concurrency") == concurrency
        )
        return float(row["turns_per_s"])
    return None

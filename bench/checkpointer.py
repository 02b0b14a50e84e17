"""Checkpointer micro-benchmark: N sequential `aput` + `aget_tuple` (latest) pairs.

Compares, in one run, InMemorySaver, AsyncSqliteSaver (a file in a temp dir) and
AsyncRedisSaver (on REDIS_URL, default redis://127.0.0.1:6379/0, under a unique key
prefix that is deleted afterwards) on a realistic agent checkpoint: a `messages`
channel holding a 20-message window of a tool-using conversation (human, AI with
tool calls, tool results, AI answers), plus a few scalar channels. Each pair adds
one message (the oldest drops out), so `messages` gets a new version every pair
while the scalar channels mostly keep theirs, as in a real run.

    .venv/bin/python -m bench.checkpointer --pairs 2000 --json bench/results/checkpointer.json

Reports pairs/s, p50/p99 latency per pair, Redis round trips and commands per pair
(counted on the wire) and the ratios redis/sqlite and redis/inmemory. Targets:
redis >= 1.5x sqlite, >= 0.5x inmemory.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.base import BaseCheckpointSaver, Checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from redis.asyncio import BlockingConnectionPool, Redis
from redis.utils import HIREDIS_AVAILABLE
from tests.support.redis_server import CountingConnection, command_names

from agent_server.persistence.redis_saver import AsyncRedisSaver

WINDOW = 20
TARGET_VS_SQLITE = 1.5
TARGET_VS_INMEMORY = 0.5


def make_message(i: int) -> BaseMessage:
    """Message i of a conversation cycling human -> AI tool call -> tool -> AI answer."""
    kind = i % 4
    turn = i // 4
    call_id = f"call_{turn:06d}"
    if kind == 0:
        return HumanMessage(f"What is the weather in city #{turn} and 17.5 * {turn}?", id=f"h{i}")
    if kind == 1:
        return AIMessage(
            "",
            id=f"a{i}",
            tool_calls=[
                {"name": "weather", "args": {"city": f"city #{turn}"}, "id": call_id},
                {"name": "calculator", "args": {"expression": f"17.5*{turn}"}, "id": call_id + "b"},
            ],
            usage_metadata={"input_tokens": 812, "output_tokens": 41, "total_tokens": 853},
            response_metadata={"model_name": "offline", "finish_reason": "tool_calls"},
        )
    if kind == 2:
        return ToolMessage(
            json.dumps({"city": f"city #{turn}", "temperature_c": 21.5, "conditions": "clear"}),
            tool_call_id=call_id,
            name="weather",
            id=f"t{i}",
        )
    return AIMessage(
        f"In city #{turn} it is 21.5 °C and clear; 17.5 * {turn} = {17.5 * turn}. " * 3,
        id=f"a{i}",
        usage_metadata={"input_tokens": 1020, "output_tokens": 96, "total_tokens": 1116},
        response_metadata={"model_name": "offline", "finish_reason": "stop"},
    )


class Conversation:
    """Builds successive checkpoints of one thread the way the Pregel loop would."""

    def __init__(self, saver: BaseCheckpointSaver, thread_id: str) -> None:
        self.saver = saver
        self.thread_id = thread_id
        self.count = WINDOW
        self.messages = [make_message(i) for i in range(WINDOW)]
        self.versions: dict[str, Any] = {}
        self.parent_id: str | None = None
        self.step = -1
        self.values: dict[str, Any] = {
            "messages": self.messages,
            "session_id": thread_id,
            "model_used": "offline",
            "degraded": False,
            "turns": 0,
        }

    def next(self) -> tuple[dict[str, Any], Checkpoint, dict[str, Any], dict[str, Any]]:
        self.step += 1
        if self.step > 0:
            self.messages = [*self.messages[1:], make_message(self.count)]
            self.count += 1
            self.values = {**self.values, "messages": self.messages}
            self.values["turns"] = self.count // 4
            updated = ["messages"] + (["turns"] if self.count % 4 == 0 else [])
        else:
            updated = list(self.values)
        new_versions = {
            channel: self.saver.get_next_version(self.versions.get(channel), None)
            for channel in updated
        }
        self.versions.update(new_versions)
        checkpoint: Checkpoint = {
            "v": 4,
            "id": str(uuid6(clock_seq=self.step)),
            "ts": datetime.now(UTC).isoformat(),
            "channel_values": dict(self.values),
            "channel_versions": dict(self.versions),
            "versions_seen": {
                "__input__": {},
                "model": {"messages": self.versions["messages"]},
                "tools": {"messages": self.versions["messages"]},
            },
            "updated_channels": updated,
        }
        configurable: dict[str, Any] = {"thread_id": self.thread_id, "checkpoint_ns": ""}
        if self.parent_id:
            configurable["checkpoint_id"] = self.parent_id
        metadata = {"source": "loop", "step": self.step, "parents": {}, "run_id": "bench-run"}
        self.parent_id = checkpoint["id"]
        return {"configurable": configurable}, checkpoint, metadata, new_versions


@dataclass
class Runner:
    """One saver under test: its conversation, and what it measured so far."""

    name: str
    saver: BaseCheckpointSaver
    counter: CommandCounter | None = None
    timings: list[float] = field(default_factory=list)
    round_trips: int = 0
    commands: int = 0
    census_pairs: int = 0

    def __post_init__(self) -> None:
        self.conversation = Conversation(self.saver, f"bench-{uuid.uuid4().hex}")
        self.latest = {
            "configurable": {"thread_id": self.conversation.thread_id, "checkpoint_ns": ""}
        }

    async def run(self, pairs: int, *, measure: bool = True) -> None:
        saver = self.saver
        trips_before = self.counter.round_trips if self.counter else 0
        for _ in range(pairs):
            config, checkpoint, metadata, new_versions = self.conversation.next()
            start = time.perf_counter()
            await saver.aput(config, checkpoint, metadata, new_versions)
            tup = await saver.aget_tuple(self.latest)
            elapsed = time.perf_counter() - start
            if tup is None or len(tup.checkpoint["channel_values"]["messages"]) != WINDOW:
                raise RuntimeError(f"{self.name} returned an incomplete checkpoint")
            if measure:
                self.timings.append(elapsed)
        if measure and self.counter:
            self.round_trips += self.counter.round_trips - trips_before

    async def census(self, pairs: int) -> None:
        """Count the commands of `pairs` extra, untimed pairs (see CommandCounter)."""
        if not self.counter:
            return
        self.counter.parsing, before = True, self.counter.commands
        try:
            await self.run(pairs, measure=False)
        finally:
            self.counter.parsing = False
        self.commands, self.census_pairs = self.counter.commands - before, pairs

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.timings)
        row: dict[str, Any] = {
            "pairs": len(ordered),
            "pairs_per_s": len(ordered) / sum(ordered),
            "p50_ms": statistics.median(ordered) * 1000,
            "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        }
        if self.counter:
            row["redis_round_trips_per_pair"] = self.round_trips / len(ordered)
            row["redis_commands_per_pair"] = self.commands / max(1, self.census_pairs)
        return row


class CommandCounter:
    """Counts what a client writes to its sockets, whichever code path of the saver
    sent it: round trips (socket writes) always; commands (RESP arrays in them) only
    while `parsing`, because parsing a payload costs more than the increment (the
    wire proxy alone adds ~1 us per pair; parsing too ~15 us, measured)."""

    def __init__(self) -> None:
        self.round_trips = 0
        self.commands = 0
        self.parsing = False

    def record(self, payload: bytes) -> None:
        self.round_trips += 1
        if self.parsing:
            self.commands += len(command_names(payload))


@asynccontextmanager
async def redis_runner(
    name: str,
    url: str,
    client_options: dict[str, Any] | None = None,
    *,
    blocking_pool: bool = False,
    **options: Any,
) -> AsyncIterator[Runner]:
    """A runner on AsyncRedisSaver under a unique key prefix, deleted afterwards."""
    prefix = f"bench-{uuid.uuid4().hex[:12]}"
    counter = CommandCounter()
    client_options = {"connection_class": CountingConnection, "recorder": counter} | (
        client_options or {}
    )
    if blocking_pool:
        client = Redis.from_pool(BlockingConnectionPool.from_url(url, **client_options))
    else:
        client = Redis.from_url(url, **client_options)
    try:
        saver = AsyncRedisSaver(client, key_prefix=prefix, **options)
        yield Runner(name, saver, counter)
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(keys), 500):
            await client.unlink(*keys[i : i + 500])
        await client.aclose()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    async with AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        sqlite = await stack.enter_async_context(
            AsyncSqliteSaver.from_conn_string(str(Path(tmp) / "bench.db"))
        )
        await sqlite.setup()
        runners = [
            Runner("inmemory", InMemorySaver()),
            Runner("sqlite_file", sqlite),
            await stack.enter_async_context(redis_runner("redis", args.redis_url)),
            await stack.enter_async_context(
                redis_runner(
                    "redis_ttl_bounded",
                    args.redis_url,
                    ttl_seconds=3600,
                    max_checkpoints_per_thread=20,
                )
            ),
            # The socket timeout (redis-py's default is 5 s) costs a loop timer per round
            # trip in the saver's direct lane; this row shows what that costs.
            await stack.enter_async_context(
                redis_runner(
                    "redis_no_sock_timeout", args.redis_url, client_options={"socket_timeout": None}
                )
            ),
            # A blocking pool keeps the saver on redis-py's own `execute_command` path
            # (retry wrapper, hooks, asyncio.wait_for per write): what the lane saves.
            await stack.enter_async_context(
                redis_runner("redis_execute_command", args.redis_url, blocking_pool=True)
            ),
        ]
        for runner in runners:
            await runner.run(args.warmup, measure=False)
        # Interleave blocks so that machine noise hits every saver alike.
        done = 0
        while done < args.pairs:
            block = min(args.block, args.pairs - done)
            for runner in runners:
                await runner.run(block)
            done += block
        for runner in runners:
            await runner.census(args.census)
        results = {runner.name: runner.summary() for runner in runners}

    redis_rate = results["redis"]["pairs_per_s"]
    ratios = {
        "redis_vs_sqlite": redis_rate / results["sqlite_file"]["pairs_per_s"],
        "redis_vs_inmemory": redis_rate / results["inmemory"]["pairs_per_s"],
    }
    return {
        "benchmark": "checkpointer aput + aget_tuple(latest) pairs",
        "pairs": args.pairs,
        "warmup": args.warmup,
        "block": args.block,
        "messages_window": WINDOW,
        "event_loop": args.loop,
        "redis_url": args.redis_url,
        "redis_client": "redis.asyncio.Redis.from_url defaults"
        + (" + hiredis" if HIREDIS_AVAILABLE else " (no hiredis)"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "results": results,
        "ratios": ratios,
        "targets": {
            "redis_vs_sqlite": TARGET_VS_SQLITE,
            "redis_vs_inmemory": TARGET_VS_INMEMORY,
            "met": ratios["redis_vs_sqlite"] >= TARGET_VS_SQLITE
            and ratios["redis_vs_inmemory"] >= TARGET_VS_INMEMORY,
        },
    }


def print_table(report: dict[str, Any]) -> None:
    print(
        f"{report['pairs']} pairs (aput + aget_tuple latest), {WINDOW}-message window, "
        f"{report['event_loop']} loop, {report['redis_client']}"
    )
    print(
        f"{'saver':<24}{'pairs/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'trips/pair':>11}"
        f"{'cmds/pair':>11}"
    )
    for name, row in report["results"].items():
        trips = row.get("redis_round_trips_per_pair")
        commands = row.get("redis_commands_per_pair")
        print(
            f"{name:<24}{row['pairs_per_s']:>10.0f}{row['p50_ms']:>10.3f}{row['p99_ms']:>10.3f}"
            f"{'' if trips is None else f'{trips:.2f}':>11}"
            f"{'' if commands is None else f'{commands:.2f}':>11}"
        )
    ratios, targets = report["ratios"], report["targets"]
    print(
        f"redis/sqlite = {ratios['redis_vs_sqlite']:.2f}x (target {targets['redis_vs_sqlite']}x), "
        f"redis/inmemory = {ratios['redis_vs_inmemory']:.2f}x "
        f"(target {targets['redis_vs_inmemory']}x) -> {'met' if targets['met'] else 'NOT met'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--block", type=int, default=50, help="pairs per saver per round")
    parser.add_argument(
        "--census", type=int, default=20, help="untimed pairs whose Redis commands are counted"
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop; auto = uvloop when installed, as uvicorn picks it",
    )
    args = parser.parse_args(argv)
    if args.loop == "auto":
        args.loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    if args.loop == "uvloop":
        import uvloop

        report = uvloop.run(main_async(args))
    else:
        report = asyncio.run(main_async(args))
    print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

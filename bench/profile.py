"""Where a served turn's time goes: py-spy on the server while the bench loads it.

    python -m bench.profile --variant redis --concurrency 8 --seconds 20
    python -m bench.profile --stream --concurrency 1        # streamed turns, fake upstream
    python -m bench.profile --ap --variant embedded --concurrency 1  # runs.wait (SDK)
    python -m bench.profile --inprocess --seconds 10     # the floor, under cProfile

Starts the server like `bench.run` does (same variants), drives the same
non-streaming turn at the given concurrency, and samples the server pid with
`py-spy record --gil` (a flame graph SVG and the raw collapsed stacks): only the
thread holding the GIL is sampled, so the profile is the server's Python CPU. The stacks are
then folded into two tables printed here: the functions with the most inclusive
time, and time per library bucket (SQLAlchemy, Redis, LangGraph, serde,
logging...), both as % of the samples of the main thread. `--inprocess` profiles
the floor's graph with cProfile instead, which needs no py-spy.

Profiling is for finding costs, not measuring them: py-spy's sampling and the
loaded machine both perturb the figures, so compare buckets, not absolute times.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import functools
import io
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import servers
from bench.common import Workload, drive, run_async
from bench.http_turns import client, http_turn, variant_server
from bench.servers import DEFAULT_REDIS_URL
from bench.streaming import server_stream

# py-spy names files relative to their top package, and langgraph is a namespace
# package: its frames read `pregel/main.py`, `serde/jsonplus.py`, `sqlite/aio.py`.
BUCKETS: list[tuple[str, str]] = [
    ("agent_server (ours)", r"agent_server/"),
    ("logging (stdlib/structlog)", r"^logging/|/logging/__init__|structlog/"),
    ("prometheus metrics", r"prometheus_client/"),
    ("checkpoint serde (msgpack/jsonplus)", r"(^|/)serde/|ormsgpack"),
    ("checkpointer: sqlite saver", r"(^|/)sqlite/(aio|__init__|utils)\.py"),
    ("checkpointer: memory saver", r"(^|/)memory/__init__\.py"),
    ("redis client", r"^redis/|/redis/|hiredis"),
    ("rate limiter (limits)", r"^limits/|/limits/"),
    ("sqlalchemy", r"sqlalchemy/"),
    ("aiosqlite / asyncpg", r"aiosqlite/|asyncpg/"),
    (
        "langgraph",
        r"^(pregel|channels|graph|_internal|managed|func)/|/langgraph/|^(types|runtime)\.py",
    ),
    ("langchain callbacks/runnables", r"langchain_core/(callbacks|runnables|tracers)/"),
    ("langchain messages/tools/models", r"langchain_core/|langchain_openai/|^openai/"),
    ("pydantic", r"pydantic/|pydantic_core"),
    ("fastapi/starlette/sse", r"fastapi/|starlette/|sse_starlette/|asgi_correlation_id/"),
    ("uvicorn/httptools", r"uvicorn/|httptools"),
    ("httpx/httpcore", r"httpx/|httpcore/"),
    ("asyncio/uvloop/threads", r"^asyncio/|/asyncio/|uvloop|^threading\.py|concurrent/"),
]
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _name(frame: str) -> str:
    match = FRAME.match(frame)
    return frame if match is None else f"{match['func']} ({_short(match['file'])})"


def _bucket(frames: list[str]) -> str:
    """The library a sample is spent in: the innermost frame that belongs to a bucket
    (so `json.dumps` called by structlog counts as logging, not as the stdlib). Our
    own frames count only when they are the innermost known ones."""
    for frame in reversed(frames):
        match = FRAME.match(frame)
        path = match["file"] if match else frame
        for bucket, pattern in BUCKETS:
            if re.search(pattern, path):
                return bucket
    return "other (stdlib, C)"


def fold(collapsed: Path, *, top: int = 30) -> dict[str, Any]:
    """Inclusive and self time per function, and time per library, from py-spy's raw
    (collapsed) output, as % of all samples."""
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        for name in {_name(frame) for frame in frames}:
            inclusive[name] += count
        leaf[_name(frames[-1])] += count
        buckets[_bucket(frames)] += count
    pct = (lambda n: round(100 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "inclusive_pct": [(name, pct(n)) for name, n in inclusive.most_common(top)],
        "self_pct": [(name, pct(n)) for name, n in leaf.most_common(top)],
        "buckets_pct": [(name, pct(n)) for name, n in buckets.most_common()],
    }


def _short(path: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def print_fold(result: dict[str, Any]) -> None:
    print(f"{result['samples']} samples")
    for title, key in (
        ("time by library (innermost known frame), % of samples", "buckets_pct"),
        ("functions, inclusive %", "inclusive_pct"),
        ("functions, self %", "self_pct"),
    ):
        print(f"\n## {title}")
        for name, value in result[key]:
            print(f"{value:6.1f}  {name}")


async def _load(url: str, concurrency: int, seconds: float, workload: Workload) -> None:
    async with client(url, concurrency) as http:
        await drive(http_turn(http), concurrency=concurrency, duration=seconds, workload=workload)


async def _stream_load(url: str, concurrency: int, seconds: float, workload: Workload) -> None:
    """Streamed turns (`use_tools: false`) instead of `/api/chat/message`."""
    async with client(url, concurrency) as http:

        async def turn(session: str | None) -> str:
            sample = await server_stream(http, session)
            if sample.error is not None:
                raise RuntimeError(sample.error)
            return str(sample.session_id)

        await drive(turn, concurrency=concurrency, duration=seconds, workload=workload)


async def _ap_load(
    url: str, concurrency: int, seconds: float, workload: Workload, durability: str | None
) -> None:
    """Agent Protocol runs as `bench.agent_protocol` drives them: langgraph-sdk's
    `threads.create` then `runs.wait`, a new thread per run."""
    from langgraph_sdk import get_client

    from bench.agent_protocol import wait_turn

    sdk = get_client(url=url, api_key=None)
    try:
        await drive(
            wait_turn(sdk, durability), concurrency=concurrency, duration=seconds, workload=workload
        )
    finally:
        await sdk.aclose()


@contextlib.contextmanager
def _server(args: argparse.Namespace, logs: Path) -> Iterator[servers.Process]:
    """The server to profile; with `--stream`, pointed at a fake upstream of its own."""
    with contextlib.ExitStack() as stack:
        extra: dict[str, str] = {}
        if args.stream:
            upstream = stack.enter_context(
                servers.fake_upstream(
                    logs, first_token_latency=0.05, tokens_per_second=200.0, words=50
                )
            )
            extra = {
                "OPENROUTER_API_KEY": "bench",
                "OPENROUTER_BASE_URL": f"{upstream.url}/v1",
                "AGENT_MODELS": "bench-model",
            }
        server, _facts = stack.enter_context(
            variant_server(args.variant, logs, args.redis_url, extra_env=extra)
        )
        yield server


def profile_server(args: argparse.Namespace) -> int:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("py-spy is not installed: pip install py-spy", file=sys.stderr)
        return 2
    workload = Workload("fresh", 1) if args.turns_per_session == 1 else Workload(
        "session", args.turns_per_session
    )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    kind = "ap" if args.ap else "stream" if args.stream else "turn"
    stem = f"profile-{args.variant}-{kind}-c{args.concurrency}-{workload.name}"
    load: Any = _stream_load if args.stream else _load
    if args.ap:
        load = functools.partial(_ap_load, durability=args.durability)
    with (
        tempfile.TemporaryDirectory(prefix="bench-profile-") as logs,
        _server(args, Path(logs)) as server,
    ):
        run_async(load(server.url, args.concurrency, 2.0, workload))  # warm up
        raw = args.out / f"{stem}.txt"
        svg = args.out / f"{stem}.svg"
        common = ["--pid", str(server.pid), "--duration", str(int(args.seconds))]
        common += ["--rate", str(args.rate), "--nonblocking"]
        if not args.all_threads:
            common.append("--gil")  # Python CPU only: the thread holding the GIL
        recorders = [
            subprocess.Popen([py_spy, "record", *common, "--format", "raw", "-o", str(raw)]),
        ]
        if args.svg:
            recorders.append(subprocess.Popen([py_spy, "record", *common, "-o", str(svg)]))
        try:
            run_async(load(server.url, args.concurrency, args.seconds + 1, workload))
        finally:
            for recorder in recorders:
                recorder.wait(timeout=60)
    result = fold(raw)
    print(f"# {stem}: py-spy on the server pid, {args.seconds:g} s at c={args.concurrency}")
    print_fold(result)
    print(f"\nraw stacks: {raw}" + (f"; flame graph: {svg}" if args.svg else ""))
    return 0


def profile_in_process(args: argparse.Namespace) -> int:
    from bench.floor import in_process_turn

    workload = Workload("fresh", 1) if args.turns_per_session == 1 else Workload(
        "session", args.turns_per_session
    )  # fmt: skip
    profiler = cProfile.Profile()

    async def go() -> None:
        async with in_process_turn(args.saver, args.redis_url) as turn:
            await drive(turn, concurrency=1, duration=1.0, workload=workload)
            profiler.enable()
            try:
                await drive(turn, concurrency=1, duration=args.seconds, workload=workload)
            finally:
                profiler.disable()

    run_async(go())
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("cumulative")
    stats.print_stats(args.top)
    print(stream.getvalue())
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"profile-inprocess-{args.saver}-{workload.name}.pstats"
    stats.dump_stats(target)
    print(f"pstats: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="redis", help="embedded, redis, redis_postgres")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--turns-per-session", type=int, default=1)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--svg", action="store_true", help="also write a flame graph")
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every busy thread (default: only the GIL holder, i.e. Python CPU)",
    )
    parser.add_argument("--inprocess", action="store_true", help="cProfile the floor instead")
    parser.add_argument(
        "--stream",
        action="store_true",
        help="streamed turns against a fake upstream (50 ms to first token, 200 tokens/s)",
    )
    parser.add_argument(
        "--ap",
        action="store_true",
        help="Agent Protocol runs (langgraph-sdk threads.create + runs.wait) instead",
    )
    parser.add_argument("--durability", default=None, help="--ap: the runs' durability")
    parser.add_argument("--saver", default="inmemory", help="--inprocess: inmemory/sqlite/redis")
    parser.add_argument("--top", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bench-profile")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        return profile_in_process(args) if args.inprocess else profile_server(args)
    return 130


if __name__ == "__main__":
    raise SystemExit(main())

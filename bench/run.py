"""`python -m bench.run`: every benchmark section, one JSON each, a summary, a chart.

    python -m bench.run                  # full run (several minutes)
    python -m bench.run --quick          # smoke run: every section, tiny sizes (~20 s)
    python -m bench.run --peer           # also `langgraph dev` (slow to start; not for CI)
    python -m bench.run --only floor,http --duration 5

Sections: floor (in-process graph, the reference), http (non-streaming turns
over HTTP: embedded, Redis, Redis + Postgres), stream (TTFT and per-token
overhead against a fake upstream), many (hundreds of concurrent streams),
checkpointer (`bench/checkpointer.py`, when present), ap (the LangGraph
Platform API through `langgraph_sdk`, beside REST; with `--peer` also against
`langgraph dev`), peer (`langgraph dev`).
Each section's JSON is written as soon as it finishes (`<out>/<section>.json`),
then `summary.json`, `summary.png` and a markdown table on stdout. A section
that fails is recorded with its error and the run goes on; the exit status is 1
if any section failed. Missed targets are reported, not failures: benchmarks
are not tests. `--quick` writes under `bench/results/quick/` unless `--out` says
otherwise, so a smoke run never overwrites a full run's results.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report, servers
from bench.common import environment, run_async, workloads

SECTIONS = ("floor", "http", "stream", "many", "checkpointer", "ap", "peer")
DEFAULT_OUT = Path("bench/results")


@dataclass
class Plan:
    """Every size and duration of a run; `--quick` shrinks them all."""

    quick: bool = False
    duration: float = 8.0
    warmup: float = 2.0
    floor_savers: list[str] = field(default_factory=lambda: ["inmemory", "sqlite", "redis"])
    floor_concurrencies: list[int] = field(default_factory=lambda: [1, 8])
    http_variants: list[str] = field(
        default_factory=lambda: ["embedded", "redis", "redis_postgres"]
    )
    http_concurrencies: list[int] = field(default_factory=lambda: [1, 8, 32])
    turns_per_session: int = 50
    stream_count: int = 100
    stream_turns_per_session: int = 10
    stream_first_token_latency: float = 0.05
    stream_tokens_per_second: float = 200.0
    stream_words: int = 50
    many_streams: int = 500
    many_seconds: float = 30.0
    many_variant: str = "embedded"
    checkpointer_pairs: int = 2000
    peer_concurrencies: list[int] = field(default_factory=lambda: [1, 50])
    ap_variants: list[str] = field(default_factory=lambda: ["embedded", "redis", "redis_workers"])
    ap_concurrencies: list[int] = field(default_factory=lambda: [1, 50])
    ap_peer: bool = False
    """`langgraph dev` in the ap section too (`--peer`)."""
    redis_url: str = servers.DEFAULT_REDIS_URL

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            duration=0.5,
            warmup=0.2,
            floor_savers=["inmemory"],
            floor_concurrencies=[1],
            http_variants=["embedded"],
            http_concurrencies=[8],
            turns_per_session=5,
            stream_count=4,
            stream_turns_per_session=2,
            stream_words=10,
            many_streams=50,
            many_seconds=2.0,
            checkpointer_pairs=100,
            peer_concurrencies=[1, 5],
            ap_concurrencies=[1, 5],
        )


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--peer", action="store_true", help="also benchmark `langgraph dev`")
    parser.add_argument(
        "--only", type=_names, help=f"comma-separated sections out of {','.join(SECTIONS)}"
    )
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, help="warm-up seconds before each measurement")
    parser.add_argument("--concurrency", type=_ints, help="HTTP concurrencies, e.g. 1,8,32")
    parser.add_argument(
        "--variants",
        type=_names,
        help="HTTP variants out of embedded,redis,redis_postgres,redis_workers",
    )
    parser.add_argument(
        "--ap-variants",
        type=_names,
        help="ap section's server variants out of embedded,redis,redis_workers",
    )
    parser.add_argument(
        "--ap-concurrency", type=_ints, help="ap section's concurrencies, e.g. 1,50"
    )
    parser.add_argument("--turns-per-session", type=int, help="long-session workload length")
    parser.add_argument("--streams", type=int, help="streams for the overhead measurement")
    parser.add_argument("--many-streams", type=int, help="concurrent streams (section many)")
    parser.add_argument("--many-seconds", type=float, help="how long each of those lasts")
    parser.add_argument(
        "--many-variant", choices=("embedded", "redis"), help="server config for section many"
    )
    parser.add_argument("--pairs", type=int, help="checkpointer benchmark pairs")
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", servers.DEFAULT_REDIS_URL)
    )
    args = parser.parse_args(argv)
    plan = Plan.quick_plan() if args.quick else Plan()
    plan.redis_url = args.redis_url
    plan.ap_peer = args.peer
    for arg, attribute in (
        ("duration", "duration"),
        ("warmup", "warmup"),
        ("concurrency", "http_concurrencies"),
        ("variants", "http_variants"),
        ("ap_variants", "ap_variants"),
        ("ap_concurrency", "ap_concurrencies"),
        ("turns_per_session", "turns_per_session"),
        ("streams", "stream_count"),
        ("many_streams", "many_streams"),
        ("many_seconds", "many_seconds"),
        ("many_variant", "many_variant"),
        ("pairs", "checkpointer_pairs"),
    ):
        if (value := getattr(args, arg)) is not None:
            setattr(plan, attribute, value)
    if args.only:
        unknown = set(args.only) - set(SECTIONS)
        if unknown:
            parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    if args.out is None:
        args.out = DEFAULT_OUT / "quick" if args.quick else DEFAULT_OUT
    return args, plan


# --- sections ------------------------------------------------------------------------


def run_floor(plan: Plan, log_dir: Path) -> dict[str, Any]:
    from bench import floor

    async def measure() -> dict[str, Any]:
        result: dict[str, Any] = {"rows": []}
        for saver in plan.floor_savers:
            # The floor itself at every concurrency; the other savers at c=1 only.
            concurrencies = plan.floor_concurrencies if saver == "inmemory" else [1]
            part = await floor.measure(
                workloads=workloads(plan.turns_per_session),
                concurrencies=concurrencies,
                duration=plan.duration,
                warmup=plan.warmup,
                savers=[saver],
                redis_url=plan.redis_url,
            )
            result = {**part, "rows": [*result["rows"], *part["rows"]]}
        return result

    return run_async(measure())


def run_http(plan: Plan, log_dir: Path) -> dict[str, Any]:
    from bench import http_turns

    return http_turns.run_variants(
        variants=plan.http_variants,
        workloads=workloads(plan.turns_per_session),
        concurrencies=plan.http_concurrencies,
        duration=plan.duration,
        warmup=plan.warmup,
        log_dir=log_dir,
        redis_url=plan.redis_url,
    )


def _upstream_overrides(upstream: servers.Process) -> dict[str, str]:
    return {
        "OPENROUTER_API_KEY": "bench",
        "OPENROUTER_BASE_URL": f"{upstream.url}/v1",
        "AGENT_MODELS": "bench-model",
    }


def run_stream(plan: Plan, log_dir: Path) -> dict[str, Any]:
    from bench import streaming

    with (
        servers.fake_upstream(
            log_dir,
            first_token_latency=plan.stream_first_token_latency,
            tokens_per_second=plan.stream_tokens_per_second,
            words=plan.stream_words,
        ) as upstream,
        servers.agent_server(
            log_dir, name="agent-server-stream", overrides=_upstream_overrides(upstream)
        ) as server,
        servers.passthrough_proxy(log_dir, upstream.url) as proxy,
    ):
        result = run_async(
            streaming.measure(
                server.url,
                upstream.url,
                proxy_url=proxy.url,
                streams=plan.stream_count,
                turns_per_session=plan.stream_turns_per_session,
                first_token_latency=plan.stream_first_token_latency,
                tokens_per_second=plan.stream_tokens_per_second,
                words=plan.stream_words,
                warmup=1 if plan.quick else 5,
            )
        )
        result["server_config"] = server.config
        result["proxy_config"] = proxy.config
    return result


def run_many(plan: Plan, log_dir: Path) -> dict[str, Any]:
    from bench import many_streams

    words = 50
    with (
        servers.fake_upstream(
            log_dir,
            first_token_latency=plan.stream_first_token_latency,
            tokens_per_second=words / plan.many_seconds,
            words=words,
            name="fake-upstream-slow",
        ) as upstream,
        servers.redis_prefix(plan.redis_url) as prefix,
    ):
        overrides = _upstream_overrides(upstream)
        if plan.many_variant == "redis":
            overrides.update({"REDIS_URL": plan.redis_url, "REDIS_KEY_PREFIX": prefix})
        with servers.agent_server(log_dir, name="agent-server-many", overrides=overrides) as server:
            result = run_async(
                many_streams.measure(
                    server.url,
                    server.pid,
                    streams=plan.many_streams,
                    stream_seconds=plan.many_seconds,
                    first_token_latency=plan.stream_first_token_latency,
                )
            )
            result["variant"] = plan.many_variant
            result["server_config"] = server.config
    return result


def run_checkpointer(plan: Plan, out: Path, log_dir: Path) -> dict[str, Any]:
    """`bench/checkpointer.py` is another engineer's; call it through its CLI only."""
    if not (servers.REPO_ROOT / "bench" / "checkpointer.py").exists():
        return {"skipped": "bench/checkpointer.py is not there yet"}
    target = out / "checkpointer.json"
    target.unlink(missing_ok=True)
    argv = [
        sys.executable,
        "-m",
        "bench.checkpointer",
        "--pairs",
        str(plan.checkpointer_pairs),
        "--json",
        str(target.resolve()),
    ]
    env = {**os.environ, "REDIS_URL": plan.redis_url}
    with (log_dir / "checkpointer.log").open("wb") as log:
        completed = subprocess.run(
            argv,
            cwd=servers.REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=1800,
            check=False,
        )
    if completed.returncode != 0 or not target.exists():
        tail = (log_dir / "checkpointer.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"bench.checkpointer exited {completed.returncode}:\n{tail}")
    return json.loads(target.read_text())


def run_ap(plan: Plan, log_dir: Path) -> dict[str, Any]:
    from bench import agent_protocol

    return agent_protocol.run(
        variants=plan.ap_variants,
        concurrencies=plan.ap_concurrencies,
        duration=plan.duration,
        warmup=plan.warmup,
        log_dir=log_dir,
        redis_url=plan.redis_url,
        peer=plan.ap_peer,
    )


def run_peer(plan: Plan, log_dir: Path) -> dict[str, Any]:
    from bench import peer

    return peer.run(
        log_dir=log_dir,
        concurrencies=plan.peer_concurrencies,
        duration=max(plan.duration, 2.0),
        warmup=plan.warmup,
    )


# --- driver --------------------------------------------------------------------------


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str, allow_nan=True) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    args, plan = parse_args(argv)
    chosen = list(args.only or [s for s in SECTIONS if s != "peer"])
    if args.peer and "peer" not in chosen:
        chosen.append("peer")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary: dict[str, Any] = {
        "meta": {
            "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "quick": plan.quick,
            "duration_s": plan.duration,
            "sections": chosen,
            "plan": asdict(plan),
            "environment": environment(),
        }
    }
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as logs:
        log_dir = Path(logs)
        for section in chosen:
            print(f"bench: {section} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                if section == "floor":
                    result = run_floor(plan, log_dir)
                elif section == "http":
                    result = run_http(plan, log_dir)
                elif section == "stream":
                    result = run_stream(plan, log_dir)
                elif section == "many":
                    result = run_many(plan, log_dir)
                elif section == "checkpointer":
                    result = run_checkpointer(plan, out, log_dir)
                elif section == "ap":
                    result = run_ap(plan, log_dir)
                else:
                    result = run_peer(plan, log_dir)
            except Exception as exc:
                failed.append(section)
                traceback.print_exc()
                result = {"error": f"{type(exc).__name__}: {exc}"}
            result["section_seconds"] = round(time.perf_counter() - t0, 1)
            summary[section] = result
            if section != "checkpointer" or "error" in result or "skipped" in result:
                _write(out / f"{section}.json", result)
            print(f"bench: {section} done in {result['section_seconds']} s", file=sys.stderr)
    summary["meta"]["total_seconds"] = round(time.perf_counter() - started, 1)
    summary["targets"] = report.targets(summary)
    summary["failed_sections"] = failed
    _write(out / "summary.json", summary)
    try:
        report.chart(summary, out / "summary.png")
    except Exception:
        traceback.print_exc()
        failed.append("chart")
    print(report.markdown(summary))
    print(f"results: {out}/ (summary.json, summary.png); took {summary['meta']['total_seconds']} s")
    if failed:
        print(f"failed sections: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

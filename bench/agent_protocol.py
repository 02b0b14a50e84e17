"""The LangGraph Platform API ("Agent Protocol") surface, driven by the real client.

What a user of langgraph-sdk, Studio or Agent Chat UI gets from our server, measured
the way they call it: `langgraph_sdk.get_client` (its own httpx client and defaults),
`threads.create` then `runs.wait` or `runs.stream` (`["values", "messages-tuple"]`),
a new thread per run, as `bench/peer.py` does. Beside it, in the same server process
and the same minutes, the REST turn (`POST /api/chat/message`, a new session per
turn) on the same message: the two surfaces share one run core, so the protocol's
cost over REST is what its own routes add. With `--peer`, `langgraph dev` serving the
same graph gets the same two SDK workloads (never at the same time as our server).

Per row: runs/s, latency percentiles of the whole run (thread creation included),
server CPU per run (psutil on the server pid) and, for streams, the time from the
`runs.stream` call to the first `messages` event and to the first one with text.
The targets (`report.ap_ratios`) are ratios inside this one run: `runs.wait` p50 at
c=1 ≤ 1.1x REST's p50; runs/s ≥ 100x `langgraph dev`'s at c=1, ≥ 2x at c=50.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from bench import report, servers
from bench.common import (
    EXPECTED,
    MESSAGE,
    TurnFn,
    Workload,
    cpu_seconds,
    drive,
    percentile,
    run_async,
)
from bench.http_turns import measure_server, server_cpu, variant_server

FRESH = Workload("fresh", 1)
ASSISTANT = "agent"
"""The graph id in `langgraph.json`; both servers resolve it to their assistant."""
STREAM_MODES = ["values", "messages-tuple"]
"""What Agent Chat UI and `useStream` ask for."""
SDK_CLIENTS = ("runs.wait", "runs.stream", "runs.wait exit")
"""`runs.wait exit` is `runs.wait` with `durability="exit"`: the protocol's default is
`async` (a checkpoint after every step, as the reference does) where REST checkpoints
once at the end (`CHECKPOINT_DURABILITY=exit`); the row says how much of the gap to
REST that choice is. Informative only: the targets are on the default."""
ONE_REQUEST_CLIENTS = ("runs.wait 1req", "runs.wait 1req exit")
"""`runs.wait` alone, one request a run as REST's new-session turn is: the run makes its
thread (`if_not_exists="create"` on a client-made id, as RemoteGraph sends every run),
at the default durability and at `exit` (REST's). Measured at c=1 only: they split the
c=1 gap to REST into the second request, the per-step checkpoints and the rest."""
SDK_TIMEOUT_SECONDS = 120.0
INPUT = {"messages": [{"role": "user", "content": MESSAGE}]}


def answer_of(values: Any) -> Any:
    """The run's answer from its final values: the graph's `last_turn.response`, else
    the last message's content (either server, whatever state keys it returns)."""
    if not isinstance(values, dict):
        return None
    last_turn = values.get("last_turn")
    if isinstance(last_turn, dict) and last_turn.get("response") is not None:
        return last_turn["response"]
    messages = values.get("messages") or []
    return messages[-1].get("content") if messages and isinstance(messages[-1], dict) else None


def _has_text(data: Any) -> bool:
    """A `messages` event's `[message, metadata]` whose message carries text (not the
    tool-call chunk that comes first in a calculator turn)."""
    if not isinstance(data, list | tuple) or not data or not isinstance(data[0], dict):
        return False
    content = data[0].get("content")
    if isinstance(content, str):
        return bool(content)
    if isinstance(content, list):
        return any(isinstance(p, dict) and p.get("text") for p in content)
    return False


def wait_turn(client: Any, durability: str | None = None, *, one_request: bool = False) -> TurnFn:
    extra: dict[str, Any] = {"durability": durability} if durability else {}
    if one_request:
        extra["if_not_exists"] = "create"

    async def turn(_session: str | None) -> str:
        if one_request:
            thread_id = str(uuid.uuid4())
        else:
            thread_id = (await client.threads.create())["thread_id"]
        values = await client.runs.wait(thread_id, ASSISTANT, input=INPUT, **extra)
        if (answer := answer_of(values)) != EXPECTED:
            raise RuntimeError(f"unexpected answer {answer!r}")
        return str(thread_id)

    return turn


class StreamTurns:
    """`runs.stream` turns, keeping when each run's first `messages` events came."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.first_message: list[float] = []
        self.first_text: list[float] = []

    def reset(self) -> None:
        self.first_message.clear()
        self.first_text.clear()

    async def __call__(self, _session: str | None) -> str:
        thread = await self.client.threads.create()
        started = time.perf_counter()
        first_message: float | None = None
        first_text: float | None = None
        values: Any = None
        async for part in self.client.runs.stream(
            thread["thread_id"], ASSISTANT, input=INPUT, stream_mode=STREAM_MODES
        ):
            if part.event == "messages":
                now = time.perf_counter() - started
                if first_message is None:
                    first_message = now
                if first_text is None and _has_text(part.data):
                    first_text = now
            elif part.event == "values":
                values = part.data
            elif part.event == "error":
                raise RuntimeError(f"error event: {str(part.data)[:200]}")
        if (answer := answer_of(values)) != EXPECTED:
            raise RuntimeError(f"unexpected answer {answer!r}")
        if first_message is None:
            raise RuntimeError("no messages event")
        # Only runs that succeeded count, as in the latency percentiles.
        self.first_message.append(first_message)
        if first_text is not None:
            self.first_text.append(first_text)
        return str(thread["thread_id"])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, values in (
            ("first_message", self.first_message),
            ("first_text", self.first_text),
        ):
            ms = [v * 1000 for v in values]
            out[name] = {
                "samples": len(ms),
                **{f"p{q}_ms": percentile(ms, q) for q in (50, 95, 99)},
            }
        return out


async def measure_sdk(
    server: servers.Process,
    *,
    target: str,
    concurrencies: list[int],
    duration: float,
    warmup: float,
    api_key: str | None = None,
    clients: tuple[str, ...] = SDK_CLIENTS,
) -> list[dict[str, Any]]:
    """Each of `clients` at each concurrency, a fresh SDK client for each
    measurement (as `http_turns` has a fresh httpx client), warm-up first."""
    from langgraph_sdk import get_client

    rows: list[dict[str, Any]] = []
    for concurrency in concurrencies:
        for name in clients:
            # api_key=None, not omitted: the SDK would otherwise send a key it finds in
            # the environment (LANGSMITH_API_KEY...), which neither server here needs.
            client = get_client(url=server.url, api_key=api_key, timeout=SDK_TIMEOUT_SECONDS)
            try:
                stream = StreamTurns(client) if name == "runs.stream" else None
                durability = "exit" if name.endswith(" exit") else None
                turn: TurnFn = (
                    stream
                    if stream is not None
                    else wait_turn(client, durability, one_request="1req" in name)
                )
                await drive(
                    turn,
                    concurrency=concurrency,
                    duration=warmup,
                    workload=FRESH,
                    whole_sessions=False,
                )
                if stream is not None:
                    stream.reset()
                server0, client0 = server_cpu(server.pid), cpu_seconds()
                result = await drive(
                    turn, concurrency=concurrency, duration=duration, workload=FRESH
                )
                server_s = server_cpu(server.pid) - server0
                client_s = cpu_seconds() - client0
            finally:
                await client.aclose()
            row = {"target": target, "client": name, **result.summary()}
            row["runs_per_s"] = row["turns_per_s"]
            row["server_cpu_ms_per_run"] = 1000 * server_s / max(1, result.turns)
            row["client_cpu_ms_per_run"] = 1000 * client_s / max(1, result.turns)
            if stream is not None:
                row.update(stream.summary())
            rows.append(row)
    return rows


async def measure_rest(
    server: servers.Process, *, concurrencies: list[int], duration: float, warmup: float
) -> list[dict[str, Any]]:
    rows = await measure_server(
        server, workloads=[FRESH], concurrencies=concurrencies, duration=duration, warmup=warmup
    )
    for row in rows:
        row.update(
            target="agent-server",
            client="rest",
            runs_per_s=row["turns_per_s"],
            server_cpu_ms_per_run=row["server_cpu_ms_per_turn"],
            client_cpu_ms_per_run=row["client_cpu_ms_per_turn"],
        )
    return rows


def run(
    *,
    variants: list[str],
    concurrencies: list[int],
    duration: float,
    warmup: float,
    log_dir: Path,
    redis_url: str,
    peer: bool,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "what": "langgraph_sdk get_client: threads.create + runs.wait / runs.stream "
        f"(stream_mode {STREAM_MODES}), a new thread per run; REST: POST /api/chat/message, "
        f"a new session per turn; message {MESSAGE!r} -> {EXPECTED!r}",
        "concurrencies": concurrencies,
        "variants": {},
    }
    for variant in variants:
        try:
            with variant_server(variant, log_dir, redis_url) as (server, facts):

                async def measure(server: servers.Process = server) -> list[dict[str, Any]]:
                    rows: list[dict[str, Any]] = []
                    # Concurrency by concurrency, the three clients back to back: each
                    # ratio compares minutes of the same machine state.
                    for c in concurrencies:
                        kwargs = {"concurrencies": [c], "duration": duration, "warmup": warmup}
                        rows += await measure_rest(server, **kwargs)
                        clients = SDK_CLIENTS + (ONE_REQUEST_CLIENTS if c == 1 else ())
                        rows += await measure_sdk(
                            server, target="agent-server", clients=clients, **kwargs
                        )
                    return rows

                facts["rows"] = run_async(measure())
        except LookupError as exc:
            facts = {"variant": variant, "skipped": str(exc)}
        result["variants"][variant] = facts
    if peer:
        with servers.langgraph_dev(log_dir) as dev:
            peer_kwargs = {"duration": max(duration, 2.0), "warmup": warmup}
            rows = run_async(
                measure_sdk(
                    dev,
                    target="langgraph dev",
                    clients=("runs.wait", "runs.stream"),
                    concurrencies=concurrencies,
                    **peer_kwargs,
                )
            )
            if 1 in concurrencies:  # the one-request runs, as ours are measured
                rows += run_async(
                    measure_sdk(
                        dev,
                        target="langgraph dev",
                        clients=ONE_REQUEST_CLIENTS[:1],
                        concurrencies=[1],
                        **peer_kwargs,
                    )
                )
            result["langgraph_dev"] = {"config": dev.config, "rows": rows}
    else:
        result["langgraph_dev"] = {"skipped": "not asked for (--peer)"}
    result["ratios"] = report.ap_ratios(result)
    return result

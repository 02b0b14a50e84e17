"""Peer comparison: `langgraph dev` serving the same graph, vs our server.

Optional (`--peer`), never in CI: `langgraph dev` takes a while to start and is
LangGraph's development server, not a production one, but it is what users of
the same graph would otherwise reach for. Same turn, same machine, same run:
`langgraph dev` (in-memory runtime, our `graphs/agent.py` via `langgraph.json`)
is driven by `langgraph_sdk` (`threads.create` + `runs.wait`, a new thread per
run), our server (embedded defaults) by `POST /api/chat/message` with a new
session per turn. One after the other, never at once, so neither steals the
other's CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import servers
from bench.common import EXPECTED, MESSAGE, TurnFn, Workload, drive, run_async
from bench.http_turns import measure_server, server_cpu

FRESH = Workload("fresh", 1)


def sdk_turn(client: Any) -> TurnFn:
    async def turn(_session: str | None) -> str:
        thread = await client.threads.create()
        values = await client.runs.wait(
            thread["thread_id"],
            "agent",
            input={"messages": [{"role": "user", "content": MESSAGE}]},
        )
        answer = ((values or {}).get("last_turn") or {}).get("response")
        if answer != EXPECTED:
            raise RuntimeError(f"unexpected answer {answer!r}")
        return str(thread["thread_id"])

    return turn


async def measure_langgraph_dev(
    server: servers.Process, *, concurrencies: list[int], duration: float, warmup: float
) -> list[dict[str, Any]]:
    from langgraph_sdk import get_client

    rows: list[dict[str, Any]] = []
    client = get_client(url=server.url, timeout=120.0)
    try:
        turn = sdk_turn(client)
        for concurrency in concurrencies:
            await drive(
                turn, concurrency=concurrency, duration=warmup, workload=FRESH, whole_sessions=False
            )
            cpu0 = server_cpu(server.pid)
            result = await drive(turn, concurrency=concurrency, duration=duration, workload=FRESH)
            row = result.summary()
            row["server_cpu_ms_per_turn"] = (
                1000 * (server_cpu(server.pid) - cpu0) / max(1, result.turns)
            )
            rows.append(row)
    finally:
        await client.aclose()
    return rows


def run(
    *, log_dir: Path, concurrencies: list[int], duration: float, warmup: float
) -> dict[str, Any]:
    with servers.langgraph_dev(log_dir) as peer:
        peer_rows = run_async(
            measure_langgraph_dev(
                peer, concurrencies=concurrencies, duration=duration, warmup=warmup
            )
        )
        peer_config = peer.config
    with servers.agent_server(log_dir, name="agent-server-peer") as ours:
        our_rows = run_async(
            measure_server(
                ours,
                workloads=[FRESH],
                concurrencies=concurrencies,
                duration=duration,
                warmup=warmup,
            )
        )
        our_config = ours.config
    comparison = []
    for mine, theirs in zip(our_rows, peer_rows, strict=True):
        comparison.append(
            {
                "concurrency": mine["concurrency"],
                "agent_server_turns_per_s": mine["turns_per_s"],
                "langgraph_dev_turns_per_s": theirs["turns_per_s"],
                "speedup": mine["turns_per_s"] / theirs["turns_per_s"]
                if theirs["turns_per_s"]
                else float("inf"),
            }
        )
    return {
        "what": "langgraph dev (langgraph_sdk threads.create + runs.wait) vs agent-server "
        "(POST /api/chat/message, embedded defaults), a new thread/session per turn",
        "langgraph_dev": {"config": peer_config, "rows": peer_rows},
        "agent_server": {"config": our_config, "rows": our_rows},
        "comparison": comparison,
    }

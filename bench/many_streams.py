"""Many streams: hundreds of SSE streams held open together on one server.

The upstream is slow on purpose (tokens spaced so each stream lasts ~30 s), so
every stream is open at the same time: this measures what an idle-but-open
stream costs (memory, event-loop time) and whether a burst of new streams is
served without errors. All streams are started at once. Reported: errors (non-200,
transport errors, `error` events, no `done`), TTFT percentiles, how many streams
were open at the peak (client side), the server's CPU time over the run (what
open-but-idle streams cost), and its RSS sampled every 100 ms with psutil (peak and before/after;
MB = 10^6 bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import psutil

from bench.common import percentile
from bench.http_turns import server_cpu
from bench.streaming import StreamSample, server_stream

RSS_SAMPLE_SECONDS = 0.1


def rss_bytes(pid: int) -> int:
    process = psutil.Process(pid)
    total = 0
    for proc in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def streaming_together(samples: list[StreamSample]) -> int:
    """Streams that had sent a token and not yet finished at the moment the last
    stream got its first token: proof that they were all held open at once."""
    firsts = [s.started_at + s.ttft for s in samples if s.ttft is not None]
    if not firsts:
        return 0
    moment = max(firsts)
    return sum(
        1
        for s in samples
        if s.ttft is not None and s.started_at + s.ttft <= moment <= s.started_at + s.total
    )


async def measure(
    server_url: str,
    server_pid: int,
    *,
    streams: int,
    stream_seconds: float,
    first_token_latency: float,
) -> dict[str, Any]:
    rss: list[int] = []
    rss_times: list[float] = []
    stop = asyncio.Event()

    async def sample_rss() -> None:
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                rss.append(rss_bytes(server_pid))
                rss_times.append(time.perf_counter() - started)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RSS_SAMPLE_SECONDS)

    rss_before = rss_bytes(server_pid)
    cpu_before = server_cpu(server_pid)
    limits = httpx.Limits(max_connections=streams + 8, max_keepalive_connections=streams + 8)
    timeout = httpx.Timeout(stream_seconds * 3 + 60, connect=30.0)
    started = time.perf_counter()
    sampler = asyncio.create_task(sample_rss())
    try:
        async with httpx.AsyncClient(base_url=server_url, limits=limits, timeout=timeout) as http:
            samples = await asyncio.gather(*(server_stream(http, None) for _ in range(streams)))
    finally:
        stop.set()
        await sampler
    elapsed = time.perf_counter() - started
    cpu_seconds = server_cpu(server_pid) - cpu_before
    rss_after = rss_bytes(server_pid)
    errors = [s.error for s in samples if s.error is not None]
    ttft_ms = [(s.ttft or 0) * 1000 for s in samples if s.error is None and s.ttft is not None]
    mb = 1_000_000
    step = max(1, len(rss) // 300)
    return {
        "streams": streams,
        "target_stream_seconds": stream_seconds,
        "upstream_first_token_latency_s": first_token_latency,
        "wall_s": elapsed,
        "errors": len(errors),
        "error_samples": errors[:5],
        "completed": sum(1 for s in samples if s.error is None),
        "streaming_together": streaming_together(samples),
        "ttft_ms": {
            "p50": percentile(ttft_ms, 50),
            "p99": percentile(ttft_ms, 99),
            "max": max(ttft_ms) if ttft_ms else float("nan"),
        },
        "stream_total_s_p50": percentile([s.total for s in samples if s.error is None], 50),
        "server_cpu_s": cpu_seconds,
        "server_cpu_utilisation": cpu_seconds / elapsed if elapsed > 0 else 0.0,
        "rss_mb": {
            "before": rss_before / mb,
            "peak": max(rss, default=rss_before) / mb,
            "after": rss_after / mb,
            "samples": len(rss),
            "series": [
                [round(t, 2), round(r / mb, 1)]
                for t, r in zip(rss_times[::step], rss[::step], strict=True)
            ],
        },
    }

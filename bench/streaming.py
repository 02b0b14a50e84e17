"""Streaming overhead: what the server adds to time-to-first-token and per token.

The upstream is the fake OpenAI-compatible server in its own process, with a
known first-token latency and token interval. The clients take turns, one
sample each in alternation so machine noise hits both alike:

- *direct*: a raw httpx SSE client on the upstream's `/v1/chat/completions`,
  the baseline (what the upstream and loopback cost by themselves);
- *via server*: `POST /api/chat/message/stream` with `use_tools: false`;
- *via proxy* (when a proxy URL is given): the same raw client through
  `bench.proxy`, the thinnest Python streaming proxy on our server's stack, so
  what one more Python HTTP hop costs here by itself is measured beside us;
- *in-process* (the streaming floor): the app's graph built as in `bench.floor`
  (InMemorySaver), pointed at the same upstream, `graph.astream(stream_mode=
  ["messages", "custom", "updates"])` as the service calls it, no HTTP.

For each, TTFT is measured from just before the request is sent (or the graph
is started) to the first token (`message` event / non-empty `delta.content` /
first model-node chunk with text), and per-token time is the inter-arrival of
consecutive tokens; the configured latency and interval are subtracted. The
server's overhead is reported against the direct baseline and against the
in-process graph (differences of the distributions' percentiles): the first is
what a user pays over calling the model directly, the second what the service
adds around the graph.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import percentile
from bench.floor import bench_settings

STREAM_MESSAGE = "Tell me a story."
UPSTREAM_MODEL = "bench-model"


@dataclass
class StreamSample:
    """One stream as the client saw it (times in seconds from the request's start)."""

    token_times: list[float] = field(default_factory=list)
    events: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    session_id: str | None = None
    total: float = 0.0
    started_at: float = 0.0
    """`time.perf_counter()` when the request was sent."""

    @property
    def ttft(self) -> float | None:
        return self.token_times[0] if self.token_times else None

    @property
    def intervals(self) -> list[float]:
        times = self.token_times
        return [b - a for a, b in itertools.pairwise(times)]


async def sse_events(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a text/event-stream body, as each one completes."""
    event, data = "message", []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, "\n".join(data)


async def server_stream(
    http: httpx.AsyncClient, session_id: str | None, message: str = STREAM_MESSAGE
) -> StreamSample:
    """One streamed turn through our server; a missing `done` or any `error` event
    (or non-200 status) is an error."""
    sample = StreamSample(session_id=session_id)
    body: dict[str, Any] = {"message": message, "use_tools": False}
    if session_id is not None:
        body["session_id"] = session_id
    started = sample.started_at = time.perf_counter()
    try:
        async with http.stream("POST", "/api/chat/message/stream", json=body) as response:
            if response.status_code != 200:
                await response.aread()
                sample.error = f"HTTP {response.status_code}: {response.text[:200]}"
                return sample
            async for event, data in sse_events(response):
                now = time.perf_counter() - started
                sample.events[event] = sample.events.get(event, 0) + 1
                if event == "message":
                    sample.token_times.append(now)
                elif event == "metadata":
                    sample.session_id = json.loads(data).get("session_id")
                elif event == "error":
                    sample.error = f"error event: {data[:200]}"
    except httpx.HTTPError as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    sample.total = time.perf_counter() - started
    if sample.error is None and not sample.events.get("done"):
        sample.error = f"no done event (events: {sample.events})"
    return sample


async def direct_stream(http: httpx.AsyncClient, upstream_url: str) -> StreamSample:
    """One completion streamed straight from the upstream: the baseline."""
    sample = StreamSample()
    body = {
        "model": UPSTREAM_MODEL,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": STREAM_MESSAGE}],
    }
    started = time.perf_counter()
    try:
        async with http.stream("POST", f"{upstream_url}/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                await r.aread()
                sample.error = f"HTTP {r.status_code}"
                return sample
            async for _, data in sse_events(r):
                now = time.perf_counter() - started
                if data == "[DONE]":
                    sample.events["done"] = 1
                    break
                choices = json.loads(data).get("choices") or []
                if choices and (choices[0].get("delta") or {}).get("content"):
                    sample.token_times.append(now)
    except httpx.HTTPError as exc:
        sample.error = f"{type(exc).__name__}: {exc}"
    sample.total = time.perf_counter() - started
    return sample


@contextlib.asynccontextmanager
async def in_process_stream(upstream_url: str) -> AsyncIterator[Any]:
    """An async function running one streamed turn through the app's graph in-process
    (InMemorySaver) against `upstream_url`; returns a `StreamSample`."""
    from langchain_core.messages import AIMessageChunk
    from langgraph.checkpoint.memory import InMemorySaver

    from agent_server.graph.builder import build_graph
    from agent_server.graph.nodes.persist import message_text
    from agent_server.graph.state import FLAGS_KEY, RunFlags, RunOptions, new_turn
    from agent_server.resources import build_resources

    with tempfile.TemporaryDirectory(prefix="bench-stream-") as tmp:
        settings = bench_settings(
            Path(tmp),
            openrouter_api_key="bench",
            openrouter_base_url=f"{upstream_url}/v1",
            agent_models=[UPSTREAM_MODEL],
        )
        resources = build_resources(settings)
        durability = getattr(settings, "checkpoint_durability", None)
        extra: dict[str, Any] = {"durability": durability} if durability else {}
        options, flags = RunOptions(use_tools=False), RunFlags(stream=True)
        try:
            await resources.prepare()
            graph = build_graph(resources.deps, checkpointer=InMemorySaver())

            async def run(thread_id: str) -> StreamSample:
                sample = StreamSample(session_id=thread_id)
                turn_id = str(uuid.uuid4())
                started = sample.started_at = time.perf_counter()
                try:
                    async for mode, chunk in graph.astream(
                        new_turn(STREAM_MESSAGE, turn_id),
                        {
                            "configurable": {"thread_id": thread_id, FLAGS_KEY: flags},
                            "run_id": turn_id,
                        },
                        context=options,
                        stream_mode=["messages", "custom", "updates"],
                        **extra,
                    ):
                        if mode != "messages":
                            continue
                        message, meta = chunk
                        if (
                            meta.get("langgraph_node") == "model"
                            and isinstance(message, AIMessageChunk)
                            and message_text(message)
                        ):
                            sample.token_times.append(time.perf_counter() - started)
                    sample.events["done"] = 1
                except Exception as exc:
                    sample.error = f"{type(exc).__name__}: {exc}"
                sample.total = time.perf_counter() - started
                return sample

            yield run
        finally:
            await resources.aclose()


def _overhead(values_s: list[float], configured_s: float) -> dict[str, float]:
    ms = [(v - configured_s) * 1000 for v in values_s]
    return {
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "samples": len(ms),
    }


async def measure(
    server_url: str,
    upstream_url: str,
    *,
    streams: int,
    turns_per_session: int,
    first_token_latency: float,
    tokens_per_second: float,
    words: int,
    warmup: int = 3,
    proxy_url: str | None = None,
) -> dict[str, Any]:
    interval = 1 / tokens_per_second
    via: list[StreamSample] = []
    direct: list[StreamSample] = []
    local: list[StreamSample] = []
    proxied: list[StreamSample] = []
    async with (
        httpx.AsyncClient(base_url=server_url, timeout=60.0) as http,
        httpx.AsyncClient(timeout=60.0) as raw,
        in_process_stream(upstream_url) as in_process,
    ):
        session: str | None = None
        thread = str(uuid.uuid4())
        for i in range(warmup + streams):
            if i % turns_per_session == 0:
                # A session per `turns_per_session` turns, created untimed (as a chat UI
                # does on "new chat"); its first turn also takes the context-rebuild path.
                created = await http.post("/api/chat/session")
                created.raise_for_status()
                session = created.json()["session_id"]
                thread = str(uuid.uuid4())
            baseline = await direct_stream(raw, upstream_url)
            hop = await direct_stream(raw, proxy_url) if proxy_url else None
            floor_sample = await in_process(thread)
            sample = await server_stream(http, session)
            if i >= warmup:
                direct.append(baseline)
                if hop is not None:
                    proxied.append(hop)
                local.append(floor_sample)
                via.append(sample)

    def ok(samples: list[StreamSample]) -> list[StreamSample]:
        return [s for s in samples if s.error is None and s.ttft is not None]

    def ttft(samples: list[StreamSample]) -> dict[str, float]:
        return _overhead([s.ttft for s in ok(samples) if s.ttft is not None], first_token_latency)

    def per_token(samples: list[StreamSample]) -> dict[str, float]:
        return _overhead([d for s in ok(samples) for d in s.intervals], interval)

    ok_via, ok_direct = ok(via), ok(direct)
    via_ttft, direct_ttft, local_ttft = ttft(via), ttft(direct), ttft(local)
    via_tok, direct_tok, local_tok = per_token(via), per_token(direct), per_token(local)
    tok_via = [d for s in ok_via for d in s.intervals]

    def net(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
        return {k: a[k] - b[k] for k in ("p50_ms", "p90_ms", "p99_ms")}

    def with_proxy(
        via_part: dict[str, float],
        direct_part: dict[str, float],
        of: Callable[[list[StreamSample]], dict[str, float]],
    ) -> dict[str, dict[str, float]]:
        """The proxy's own figures and ours over it, when it was measured."""
        if not proxied:
            return {}
        hop = of(proxied)
        return {
            "via_proxy_minus_configured": hop,
            "proxy_overhead": net(hop, direct_part),
            "server_over_proxy": net(via_part, hop),
        }

    return {
        "upstream": {
            "first_token_latency_s": first_token_latency,
            "tokens_per_second": tokens_per_second,
            "token_interval_ms": interval * 1000,
            "words": words,
        },
        "streams": len(via),
        "turns_per_session": turns_per_session,
        "errors": sum(1 for s in via if s.error is not None),
        "direct_errors": sum(1 for s in direct if s.error is not None),
        "in_process_errors": sum(1 for s in local if s.error is not None),
        "proxy_errors": sum(1 for s in proxied if s.error is not None),
        "error_samples": [s.error for s in [*via, *local, *proxied] if s.error][:5],
        "tokens_per_stream": (len(tok_via) / len(ok_via) + 1) if ok_via else 0,
        "ttft": {
            "via_server_minus_configured": via_ttft,
            "direct_minus_configured": direct_ttft,
            "in_process_minus_configured": local_ttft,
            "server_overhead": net(via_ttft, direct_ttft),
            "server_over_in_process": net(via_ttft, local_ttft),
            **with_proxy(via_ttft, direct_ttft, ttft),
        },
        "per_token": {
            "via_server_minus_configured": via_tok,
            "direct_minus_configured": direct_tok,
            "in_process_minus_configured": local_tok,
            "server_overhead": net(via_tok, direct_tok),
            "server_over_in_process": net(via_tok, local_tok),
            **with_proxy(via_tok, direct_tok, per_token),
        },
        "stream_total_ms_p50": {
            "via_server": percentile([s.total * 1000 for s in ok_via], 50),
            "direct": percentile([s.total * 1000 for s in ok_direct], 50),
            "in_process": percentile([s.total * 1000 for s in ok(local)], 50),
            **(
                {"via_proxy": percentile([s.total * 1000 for s in ok(proxied)], 50)}
                if proxied
                else {}
            ),
        },
    }

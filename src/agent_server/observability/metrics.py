"""Prometheus metrics (prometheus-client), owned by an object built with the app.

Names and labels are kept to bounded sets: routes are templates (never raw
paths), models and tools come from configuration, outcomes are error classes,
and principals or keys never appear. With several uvicorn workers set
`PROMETHEUS_MULTIPROC_DIR` (an empty directory shared by the workers):
prometheus-client then writes samples to files there and `/metrics` aggregates
them with its `MultiProcessCollector`.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_PID_FILE = re.compile(r"_(\d+)\.db$")
FAST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "agent_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.http_latency = Histogram(
            "agent_http_request_duration_seconds",
            "HTTP request latency (time to response start for streams)",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_calls = Counter(
            "agent_model_calls",
            "Upstream model calls by provider, model and outcome (success or error class)",
            ["provider", "model", "outcome"],
            registry=r,
        )
        self.fallbacks = Counter(
            "agent_fallbacks", "Models skipped or failed over, by class", ["reason"], registry=r
        )
        self.tokens = Counter("agent_tokens", "Tokens used", ["model", "direction"], registry=r)
        self.cost = Counter("agent_cost_usd", "Spend in USD", ["model"], registry=r)
        self.tool_calls = Counter("agent_tool_calls", "Tool calls", ["tool", "status"], registry=r)
        self.tool_latency = Histogram(
            "agent_tool_duration_seconds",
            "Tool call latency",
            ["tool"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.approvals_requested = Counter(
            "agent_approvals_requested", "Tool calls paused for a person", ["tool"], registry=r
        )
        self.approvals_decided = Counter(
            "agent_approvals_decided",
            "Decisions on paused tool calls",
            ["tool", "action"],
            registry=r,
        )
        self.approval_wait = Histogram(
            "agent_approval_wait_seconds",
            "Time a turn waited for a person's decision",
            buckets=(1, 5, 15, 60, 300, 900, 3600, 14400, 86400),
            registry=r,
        )
        self.turns = Counter("agent_turns", "Completed turns", ["degraded"], registry=r)
        self.active_runs = Gauge(
            "agent_active_runs", "Runs in progress", registry=r, multiprocess_mode="livesum"
        )
        self.open_streams = Gauge(
            "agent_open_streams", "SSE streams open", registry=r, multiprocess_mode="livesum"
        )
        self.checkpointer_latency = Histogram(
            "agent_checkpointer_duration_seconds",
            "Checkpointer operation latency",
            ["operation"],
            buckets=FAST_BUCKETS,
            registry=r,
        )

    def exposition(self) -> bytes:
        if directory := os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            forget_dead_processes(Path(directory))
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def forget_dead_processes(directory: Path) -> list[int]:
    """Drop the live gauges (`agent_active_runs`, `agent_open_streams`) of worker
    processes that are gone: a worker killed mid-run never says so, and
    prometheus-client would keep adding its last value to every scrape. Returns the
    pids forgotten. (A pid reused by another process keeps its files: it is alive.)"""
    dead: set[int] = set()
    for file in directory.glob("gauge_live*_*.db"):
        match = _PID_FILE.search(file.name)
        if match is not None and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        with contextlib.suppress(FileNotFoundError):  # another worker's scrape was first
            multiprocess.mark_process_dead(pid, str(directory))
    return sorted(dead)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True

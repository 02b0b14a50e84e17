"""What every benchmark section shares: the turn, the load driver, percentiles, the loop.

One driver for in-process and HTTP turns keeps the two measured the same way
(same workloads, same warm-up, same stop rule), which is what makes their ratio
meaningful. Sections differ only in the `TurnFn` they pass in.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

MESSAGE = "Calculate 10 * 20"
"""One turn = offline model → one calculator call → final answer → persist."""
EXPECTED = "10 * 20 = 200"
MAX_TURNS_PER_MEASUREMENT = 200_000
"""Hard bound on any driver loop, whatever the duration says."""

TurnFn = Callable[[str | None], Awaitable[str]]
"""Runs one turn in the given session (None: a new one) and returns the session id.
Raises on any failure (wrong status, wrong answer, transport error)."""


@dataclass(frozen=True, slots=True)
class Workload:
    """`fresh`: a new session per turn. `session`: long-running sessions of
    `turns_per_session` turns, sequential within a session."""

    name: str
    turns_per_session: int

    @property
    def label(self) -> str:
        if self.turns_per_session == 1:
            return "fresh session per turn"
        return f"{self.turns_per_session} turns per session"


def workloads(turns_per_session: int) -> list[Workload]:
    return [Workload("fresh", 1), Workload("session", turns_per_session)]


def event_loop_name() -> str:
    """uvloop when installed: uvicorn's `loop="auto"` picks it, so the server under
    test runs on it and the in-process floor and the client should too."""
    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    if event_loop_name() == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def latency_summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": percentile(ms, 50),
        "p95_ms": percentile(ms, 95),
        "p99_ms": percentile(ms, 99),
        "mean_ms": statistics.fmean(ms) if ms else float("nan"),
        "max_ms": max(ms) if ms else float("nan"),
    }


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "event_loop": event_loop_name(),
    }


def cpu_seconds() -> float:
    """CPU time of this process (all threads: aiosqlite's included)."""
    times = os.times()
    return times.user + times.system


@dataclass
class LoadResult:
    concurrency: int
    workload: str
    turns_per_session: int
    duration_s: float = 0.0
    turns: int = 0
    errors: int = 0
    sessions: int = 0
    latencies: list[float] = field(default_factory=list, repr=False)
    error_samples: list[str] = field(default_factory=list)

    @property
    def turns_per_s(self) -> float:
        return self.turns / self.duration_s if self.duration_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "workload": self.workload,
            "turns_per_session": self.turns_per_session,
            "duration_s": round(self.duration_s, 3),
            "turns": self.turns,
            "sessions": self.sessions,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "turns_per_s": self.turns_per_s,
            **latency_summary_ms(self.latencies),
        }


async def drive(
    turn: TurnFn,
    *,
    concurrency: int,
    duration: float,
    workload: Workload,
    whole_sessions: bool = True,
) -> LoadResult:
    """`concurrency` workers run turns until `duration` has passed.

    Fresh sessions: a worker stops issuing at the deadline. Long sessions: a worker
    finishes the session it is in (unless `whole_sessions` is off, as for warm-ups),
    so every measured session is whole: early turns of a thread are cheaper than late
    ones, and a window cut off early would flatter us.
    Throughput = successful turns / wall time until the last worker is done.
    """
    result = LoadResult(concurrency, workload.name, workload.turns_per_session)
    started = time.perf_counter()
    deadline = started + duration
    budget = MAX_TURNS_PER_MEASUREMENT

    async def worker() -> None:
        nonlocal budget
        while time.perf_counter() < deadline and budget > 0:
            session: str | None = None
            result.sessions += 1
            for _ in range(workload.turns_per_session):
                budget -= 1
                t0 = time.perf_counter()
                try:
                    session = await turn(session)
                except Exception as exc:
                    result.errors += 1
                    if len(result.error_samples) < 5:
                        result.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
                    break  # start a new session
                result.latencies.append(time.perf_counter() - t0)
                result.turns += 1
                if budget <= 0 or (not whole_sessions and time.perf_counter() >= deadline):
                    break

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.duration_s = time.perf_counter() - started
    return result

"""Garbage-collector settings for a long-running server.

Why: a turn allocates tens of thousands of short-lived objects (LangGraph tasks and
channel copies, LangChain callback managers, pydantic models, SQLAlchemy rows).
With CPython's default threshold (700) the young generation is collected hundreds
of times per second under load and, every few seconds, a full collection walks
every object the server holds, including the ~1 M objects of the imported
libraries. Measured on the Redis c=8 benchmark: p99 242 → 73 ms, server CPU per
turn 7.8 → 6.5 ms (bench/README.md).

What: after start-up, `gc.freeze()` moves everything allocated so far (modules,
compiled graph, settings, connection pools) into a permanent generation the
collector never scans again, and the young threshold is raised so collections are
rarer but still catch reference cycles long before they matter for memory.
"""

from __future__ import annotations

import gc

OLDER_THRESHOLDS = (20, 20)
"""Young collections per middle one, middle per full one (CPython: 10, 10)."""


def tune_gc(gen0_threshold: int) -> tuple[int, int, int]:
    """Freeze start-up objects and set the thresholds; 0 leaves CPython's defaults.
    Returns the thresholds now in force. Process-wide: call once, from the server."""
    if gen0_threshold > 0:
        gc.collect()
        gc.freeze()
        gc.set_threshold(gen0_threshold, *OLDER_THRESHOLDS)
    return gc.get_threshold()

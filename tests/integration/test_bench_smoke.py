"""`make bench` keeps working: every section at its `--quick` size, end to end.

A smoke run, not a timing: it checks that each section ran against real servers
(uvicorn subprocesses, the fake upstream, the machine's Redis), measured something,
saw no errors and wrote its results and chart. The figures themselves are never
asserted; they live in bench/results/ from full runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.redis import require_redis

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(300)


def test_quick_bench_runs_every_section(tmp_path: Path) -> None:
    redis_url = require_redis()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--variants",
            "embedded,redis",
            "--redis-url",
            redis_url,
            "--out",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failed_sections"] == []

    floor = summary["floor"]["rows"]
    assert floor and all(r["turns"] > 0 and r["errors"] == 0 for r in floor)
    variants = summary["http"]["variants"]
    assert set(variants) == {"embedded", "redis"}
    for variant in variants.values():
        rows = variant["rows"]
        assert rows and all(r["turns"] > 0 and r["errors"] == 0 for r in rows), rows
    stream = summary["stream"]
    assert stream["errors"] == stream["direct_errors"] == stream["in_process_errors"] == 0
    assert stream["ttft"]["via_server_minus_configured"]["samples"] == stream["streams"]
    # The bare proxy ran beside the server and relayed every token of every stream.
    assert stream["proxy_errors"] == 0
    assert stream["ttft"]["via_proxy_minus_configured"]["samples"] == stream["streams"]
    assert "server_over_proxy" in stream["ttft"]
    many = summary["many"]
    assert many["errors"] == 0 and many["completed"] == many["streams"]
    assert many["rss_mb"]["peak"] > 0
    checkpointer = summary["checkpointer"]["results"]
    assert {"inmemory", "sqlite_file", "redis"} <= set(checkpointer)
    assert all(row["pairs"] > 0 for row in checkpointer.values())
    # The Agent Protocol section: langgraph_sdk runs.wait / runs.stream beside REST.
    ap = summary["ap"]["variants"]
    assert set(ap) == {"embedded", "redis", "redis_workers"}
    for variant in ap.values():
        rows = variant["rows"]
        assert {r["client"] for r in rows} == {
            "rest",
            "runs.wait",
            "runs.stream",
            "runs.wait exit",
            "runs.wait 1req",
            "runs.wait 1req exit",
        }
        assert all(r["turns"] > 0 and r["errors"] == 0 for r in rows), rows
        assert all(r["first_message"]["samples"] > 0 for r in rows if r["client"] == "runs.stream")
    assert summary["ap"]["ratios"]["embedded"]["wait_p50_over_rest_c1"] > 0
    assert summary["ap"]["ratios"]["embedded"]["wait1_exit_p50_over_rest_c1"] > 0
    assert [t for t in summary["targets"] if t["met"] is None and t["value"] is not None] == []
    assert (tmp_path / "summary.png").stat().st_size > 10_000
    assert "| target | measured | met |" in done.stdout

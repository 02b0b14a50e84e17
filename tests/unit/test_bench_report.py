"""The bench report still prints the sections that ran when another one failed."""

from __future__ import annotations

from pathlib import Path

from bench import report


def _summary() -> dict:
    return {
        "meta": {"started_at": "2026-11-24 18:43 UTC", "environment": {"cpus": 2}},
        "stream": {"error": "FileNotFoundError: no such interpreter", "section_seconds": 0.8},
        "many": {
            "streams": 10,
            "errors": 0,
            "streaming_together": 10,
            "target_stream_seconds": 1.0,
            "ttft_ms": {"p50": 60.0, "p99": 80.0},
            "rss_mb": {"before": 150.0, "peak": 160.0, "series": [[0.0, 150.0], [1.0, 160.0]]},
        },
    }


def test_markdown_names_the_failed_section_and_keeps_the_others() -> None:
    text = report.markdown(_summary())
    assert "Section stream failed: FileNotFoundError: no such interpreter" in text
    assert "| 10 x ~1 s (embedded) | 0 |" in text
    streaming = [t for t in report.targets(_summary()) if "TTFT" in t["target"]]
    assert streaming and all(t["value"] is None and t["met"] is None for t in streaming)
    assert any(
        t["target"] == "10 streams: zero errors" and t["met"] for t in report.targets(_summary())
    )


def test_chart_is_drawn_without_the_failed_section(tmp_path: Path) -> None:
    report.chart(_summary(), tmp_path / "summary.png")
    assert (tmp_path / "summary.png").stat().st_size > 10_000


def test_targets_include_the_redis_savers_two_ratios() -> None:
    summary = {
        "checkpointer": {
            "ratios": {"redis_vs_sqlite": 2.38, "redis_vs_inmemory": 0.44},
            "targets": {"redis_vs_sqlite": 1.5, "redis_vs_inmemory": 0.5, "met": False},
        }
    }
    rows = {t["target"]: t for t in report.targets(summary)}
    assert rows["Redis saver pairs/s ≥ 1.5x SQLite (file)"] == {
        "target": "Redis saver pairs/s ≥ 1.5x SQLite (file)",
        "value": "2.38x",
        "met": True,
    }
    assert rows["Redis saver pairs/s ≥ 0.5x InMemory"]["met"] is False
    assert "| Redis saver pairs/s ≥ 0.5x InMemory | 0.44x | **no** |" in report.markdown(summary)


def _ap_row(client: str, c: int, runs_per_s: float, p50: float) -> dict:
    return {
        "client": client,
        "concurrency": c,
        "turns": 10,
        "runs_per_s": runs_per_s,
        "p50_ms": p50,
        "p95_ms": p50,
        "p99_ms": p50,
        "errors": 0,
    }


def test_agent_protocol_targets_are_same_run_ratios() -> None:
    ap = {
        "variants": {
            "embedded": {
                "rows": [
                    _ap_row("rest", 1, 60.0, 16.0),
                    _ap_row("runs.wait", 1, 50.0, 17.0),
                    _ap_row("runs.stream", 1, 40.0, 20.0),
                    _ap_row("runs.wait", 50, 60.0, 800.0),
                    _ap_row("runs.wait 1req", 1, 80.0, 12.0),
                    _ap_row("runs.wait 1req exit", 1, 90.0, 8.0),
                ]
            },
            "redis": {"skipped": "Redis unreachable"},
        },
        "langgraph_dev": {
            "rows": [
                _ap_row("runs.wait", 1, 1.0, 1000.0),
                _ap_row("runs.wait", 50, 40.0, 1200.0),
                _ap_row("runs.wait 1req", 1, 0.5, 1000.0),
            ]
        },
    }
    ratios = report.ap_ratios(ap)
    assert set(ratios) == {"embedded"}
    assert ratios["embedded"]["wait_p50_over_rest_c1"] == 17.0 / 16.0
    assert ratios["embedded"]["stream_runs_per_s_over_langgraph_dev_c1"] is None
    rows = {t["target"]: t for t in report.targets({"ap": ap})}
    assert rows["`runs.wait` p50, c=1, embedded: ≤ 1.1x the REST turn's"] == {
        "target": "`runs.wait` p50, c=1, embedded: ≤ 1.1x the REST turn's",
        "value": "1.06x",
        "met": True,
    }
    assert rows["`runs.wait` runs/s, c=1, embedded: ≥ 100x `langgraph dev`"]["met"] is False
    assert rows["`runs.wait` runs/s, c=50, embedded: ≥ 2x `langgraph dev`"]["value"] == "1.5x"
    # The one-request rows: their own targets, beside REST and `langgraph dev`'s same row.
    assert ratios["embedded"]["wait1_exit_p50_over_rest_c1"] == 8.0 / 16.0
    one = "`runs.wait` (one request)"
    assert rows[f"{one} p50, c=1, embedded: ≤ 1.1x the REST turn's"]["value"] == "0.75x"
    assert rows[f"{one} runs/s, c=1, embedded: ≥ 100x `langgraph dev`"]["value"] == "160.0x"
    assert rows[f"{one} runs/s, c=1, embedded: ≥ 100x `langgraph dev`"]["met"] is True
    assert not any("exit" in target for target in rows)
    text = report.markdown({"ap": ap})
    assert "| agent-server, redis | skipped: Redis unreachable |" in text
    assert "| agent-server, embedded | runs.wait | 50 | 60.0 | 800.0 |" in text

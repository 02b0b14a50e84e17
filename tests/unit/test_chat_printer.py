"""How `agent-server chat` prints a turn's events (no I/O: rich into a string)."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from agent_server.chat_cli import TurnPrinter


def printed(events: list[tuple[str, dict[str, Any]]]) -> str:
    out = io.StringIO()
    printer = TurnPrinter(Console(file=out, width=120, no_color=True, highlight=False))
    for name, data in events:
        printer.event(name, data)
    printer.finish()
    return out.getvalue()


def test_tools_tokens_and_summary_in_order() -> None:
    text = printed(
        [
            ("metadata", {"session_id": "s1", "model": "offline"}),
            ("tool_start", {"id": "c1", "name": "calculator", "args": {"expression": "2+3"}}),
            (
                "tool_end",
                {
                    "id": "c1",
                    "name": "calculator",
                    "status": "success",
                    "output": '{"success": true, "result": 5}',
                    "duration_ms": 1.5,
                },
            ),
            ("message", {"content": "2+3"}),
            ("message", {"content": " = 5"}),
            (
                "done",
                {
                    "model_used": "offline",
                    "fallbacks": [],
                    "usage": {"total_tokens": 42},
                    "latency_ms": 7,
                    "degraded": False,
                },
            ),
        ]
    )
    assert text.splitlines() == [
        "  ⚙ calculator(expression='2+3')",
        "    → 5  1.5 ms",
        "2+3 = 5",
        "  offline · 42 tokens · 7 ms",
    ]


def test_fallback_reset_error_and_degraded() -> None:
    text = printed(
        [
            ("fallback", {"from": "m1", "to": "m2", "reason": "rate_limit"}),
            ("fallback", {"from": "m2", "to": None, "reason": "cooling_down"}),
            ("message", {"content": "one two"}),
            ("reset", {"model": "m2", "reason": "connection"}),
            ("message", {"content": "fine"}),
            (
                "done",
                {
                    "model_used": "offline",
                    "fallbacks": [{"model": "m1"}, {"model": "m2"}],
                    "latency_ms": 3,
                    "degraded": True,
                },
            ),
            ("error", {"code": "stream_timeout", "message": "too long"}),
            ("approval_required", {"id": "x"}),  # not handled yet: ignored, not a crash
        ]
    )
    lines = text.splitlines()
    assert lines[0] == "  ↪ m1 failed (rate_limit): trying m2"
    assert lines[1] == "  ↪ m2 failed (cooling_down): no model left"
    assert lines[2] == "one two"
    assert lines[3].startswith("  ↻ m2 failed mid-answer (connection)")
    assert lines[4] == "fine"
    assert lines[5] == "  offline · 2 fallback(s) · 3 ms  DEGRADED"
    assert lines[6] == "  ✗ stream_timeout: too long"


def test_failed_tool_and_long_output_shortened() -> None:
    text = printed(
        [
            (
                "tool_end",
                {"name": "weather", "status": "error", "output": "Error: " + "x" * 300},
            )
        ]
    )
    (line,) = text.splitlines()
    assert line.startswith("    → Error: xxx") and line.endswith("…")
    assert len(line) < 120

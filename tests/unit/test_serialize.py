"""`runs.serialize.dumps`: what the run core keeps in Redis round-trips as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agent_server.runs.serialize import dumps, loads
from agent_server.runs.store import RunRecord


def test_a_run_record_round_trips() -> None:
    record = RunRecord(
        run_id="r1",
        thread_id="t1",
        owner="key:1",
        assistant_id="a1",
        metadata={"graph_id": "agent"},
        kwargs={"input": {"messages": [{"role": "human", "content": "hé"}]}, "x": (1, 2)},
        created_at=datetime(2026, 12, 3, 11, 0, 0, tzinfo=UTC),
        error={"code": "boom"},
    )
    back = RunRecord.from_json(record.to_json())
    assert back.kwargs["x"] == [1, 2]  # JSON has no tuples
    assert back == RunRecord.from_json(json.dumps(json.loads(record.to_json())))
    assert (back.created_at, back.metadata, back.error) == (
        record.created_at,
        record.metadata,
        record.error,
    )


def test_what_orjson_refuses_still_encodes() -> None:
    assert loads(dumps({1: "int key", "big": 2**70, "obj": object})) == {
        "1": "int key",
        "big": 2**70,
        "obj": str(object),
    }

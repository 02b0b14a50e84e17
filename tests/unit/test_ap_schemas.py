"""Agent Protocol request bodies: unknown keys accepted, `null` = not given, the
reference's defaults, ids as UUIDs, checkpoints given as RunnableConfigs. No I/O."""

from __future__ import annotations

import uuid

import pytest
from fastapi.exceptions import RequestValidationError

from agent_server.api.agent_protocol.body import parse
from agent_server.api.agent_protocol.schemas import (
    HistoryQuery,
    RunCreate,
    StateAtCheckpoint,
    ThreadCreate,
    ThreadSearch,
)


def test_nulls_fall_back_to_defaults_and_unknown_keys_are_accepted() -> None:
    search = parse(ThreadSearch, {"limit": None, "metadata": None, "future_field": 1})
    assert search.limit == 10 and search.metadata == {} and search.sort_by == "updated_at"
    assert parse(ThreadSearch, None).offset == 0  # an empty body
    run = parse(RunCreate, {"assistant_id": "agent", "webhook": "https://x", "stream_mode": None})
    assert run.modes() == frozenset({"values"})
    assert run.multitask_strategy == "enqueue" and run.on_disconnect == "continue"
    assert run.if_not_exists == "reject" and run.on_completion == "delete"
    assert parse(RunCreate, {"assistant_id": "a", "stream_mode": "messages-tuple"}).modes() == {
        "messages-tuple"
    }


def test_thread_ids_are_uuids_in_canonical_form() -> None:
    raw = uuid.uuid4()
    assert parse(ThreadCreate, {"thread_id": raw.hex}).thread_id == str(raw)
    with pytest.raises(RequestValidationError) as refused:
        parse(ThreadCreate, {"thread_id": "not-a-uuid"})
    (error,) = refused.value.errors()
    assert error["loc"] == ("body", "thread_id") and "ctx" not in error


@pytest.mark.parametrize(
    "body",
    [
        {"limit": -1},
        {"limit": 10_001},
        {"offset": 10**12},
        {"status": "sleeping"},
        {"sort_order": "sideways"},
    ],
)
def test_out_of_range_values_are_422(body: dict) -> None:
    with pytest.raises(RequestValidationError):
        parse(ThreadSearch, body)


def test_unknown_stream_modes_are_refused() -> None:
    with pytest.raises(RequestValidationError):
        parse(RunCreate, {"assistant_id": "agent", "stream_mode": ["values", "lifecycle"]})


def test_a_checkpoint_may_come_as_a_runnable_config() -> None:
    config = {"configurable": {"thread_id": "t", "checkpoint_id": "c1", "checkpoint_ns": ""}}
    history = parse(HistoryQuery, {"before": config})
    assert not isinstance(history.before, str) and history.before is not None
    assert history.before.config() == {
        "checkpoint_ns": "",
        "checkpoint_id": "c1",
        "checkpoint_map": None,
    }
    assert parse(HistoryQuery, {"before": "c7"}).before == "c7"
    at = parse(StateAtCheckpoint, {"checkpoint": {"thread_id": "t"}})
    assert at.checkpoint.config()["checkpoint_id"] is None

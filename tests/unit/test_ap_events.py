"""The pure run event → SSE frame translation of the Agent Protocol surface."""

from __future__ import annotations

import json

from langchain_core.messages import AIMessageChunk, ToolMessage

from agent_server.api.agent_protocol.events import HEARTBEAT, frame, frames, graph_modes
from agent_server.runs.events import RunEvent
from agent_server.runs.serialize import jsonable


def parse(raw: bytes) -> tuple[str, object, str | None]:
    """One frame back into (event, data, id), checking the framing on the way."""
    assert raw.endswith(b"\r\n\r\n")
    fields = dict(line.split(": ", 1) for line in raw.decode().split("\r\n") if line)
    assert set(fields) <= {"event", "data", "id"}
    return fields["event"], json.loads(fields["data"]), fields.get("id")


def run(events: list[RunEvent], modes: set[str]) -> list[tuple[str, object, str | None]]:
    seen: dict = {}
    out = []
    for event in events:
        raw, seen = frames(event, frozenset(modes), seen)
        out += [parse(item) for item in raw]
    return out


def chunk(content: str, mid: str = "run-1", **kw: object) -> list[object]:
    message = AIMessageChunk(content=content, id=mid, **kw)
    return jsonable([message, {"langgraph_node": "model", "langgraph_step": 1}])


def test_framing_is_one_line_json_with_crlf_and_an_id() -> None:
    raw = frame("values", {"text": "a\nb"}, "17-0")
    assert raw == b'event: values\r\ndata: {"text":"a\\nb"}\r\nid: 17-0\r\n\r\n'
    assert frame("end", None, "0-0") == b"event: end\r\ndata: null\r\n\r\n"  # made-up id: none
    assert frame("evil\r\nevent: x", 1).startswith(b"event: evilevent: x\r\n")
    assert HEARTBEAT.startswith(b":") and HEARTBEAT.endswith(b"\r\n\r\n")


def test_metadata_error_and_end_always_go_out_and_unrequested_modes_never() -> None:
    events = [
        RunEvent("1-0", "metadata", {"run_id": "r", "attempt": 1}),
        RunEvent("1-1", "updates", {"model": {"x": 1}}),
        RunEvent("1-2", "values", {"messages": []}),
        RunEvent("1-3", "custom", {"event": "tool_start"}),
        RunEvent("1-4", "error", {"error": "ValueError", "message": "boom"}),
        RunEvent("1-5", "end", {"status": "error"}),
    ]
    got = run(events, {"values"})
    assert [(name, eid) for name, _, eid in got] == [
        ("metadata", "1-0"),
        ("values", "1-2"),
        ("error", "1-4"),
        ("end", "1-5"),
    ]
    assert got[2][1] == {"error": "ValueError", "message": "boom"}
    names = [name for name, _, _ in run(events, {"updates", "custom"})]
    assert names == ["metadata", "updates", "custom", "error", "end"]


def test_messages_tuple_is_sent_as_messages_and_subgraphs_keep_their_namespace() -> None:
    events = [
        RunEvent("2-0", "messages", chunk("Hel")),
        RunEvent("2-1", "messages|child:1", chunk("lo")),
        RunEvent("2-2", "values|child:1", {"a": 1}),
    ]
    got = run(events, {"messages-tuple", "values"})
    assert [name for name, _, _ in got] == ["messages", "messages|child:1", "values|child:1"]
    message, metadata = got[0][1]  # type: ignore[misc]
    assert message["type"] == "AIMessageChunk" and message["content"] == "Hel"
    assert message["id"] == "run-1" and metadata["langgraph_node"] == "model"
    assert graph_modes({"messages-tuple", "values"}) == ("messages", "values")
    assert graph_modes({"messages", "messages-tuple"}) == ("messages",)


def test_legacy_messages_accumulate_chunks_and_complete_whole_messages() -> None:
    tool = jsonable(
        [ToolMessage(content="4", tool_call_id="c1", id="t1"), {"langgraph_node": "tools"}]
    )
    events = [
        RunEvent("3-0", "messages", chunk("2 + 2")),
        RunEvent("3-1", "messages", chunk(" = 4")),
        RunEvent("3-2", "messages", tool),
    ]
    got = run(events, {"messages"})
    names = [name for name, _, _ in got]
    assert names == [
        "messages/metadata",
        "messages/partial",
        "messages/partial",
        "messages/metadata",
        "messages/complete",
    ]
    assert got[0][1] == {"run-1": {"metadata": {"langgraph_node": "model", "langgraph_step": 1}}}
    assert [m["content"] for m in got[1][1]] == ["2 + 2"]  # type: ignore[union-attr]
    assert [m["content"] for m in got[2][1]] == ["2 + 2 = 4"]  # type: ignore[union-attr]
    complete = got[4][1][0]  # type: ignore[index]
    assert complete["type"] == "tool" and complete["content"] == "4"


def test_both_message_modes_at_once_and_the_state_is_per_reader() -> None:
    events = [RunEvent("4-0", "messages", chunk("a")), RunEvent("4-1", "messages", chunk("b"))]
    got = run(events, {"messages", "messages-tuple"})
    assert [name for name, _, _ in got] == [
        "messages",
        "messages/metadata",
        "messages/partial",
        "messages",
        "messages/partial",
    ]
    # A second reader starts from nothing: it sees its own first sight of the id.
    again, _ = frames(events[1], frozenset({"messages"}), {})
    assert [parse(r)[0] for r in again] == ["messages/metadata", "messages/partial"]
    assert parse(again[1])[1][0]["content"] == "b"  # type: ignore[index]


def test_debug_checkpoints_gain_checkpoint_and_parent_checkpoint() -> None:
    config = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c2"}}
    parent = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c1"}}
    event = RunEvent(
        "5-0",
        "debug",
        {"type": "checkpoint", "step": 1, "payload": {"config": config, "parent_config": parent}},
    )
    ((_, data, _),) = run([event], {"debug"})
    payload = data["payload"]  # type: ignore[index]
    assert payload["checkpoint"] == {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c2"}
    assert payload["parent_checkpoint"]["checkpoint_id"] == "c1"
    task = RunEvent("5-1", "debug", {"type": "task", "payload": {"name": "model"}})
    assert run([task], {"debug"})[0][1] == {"type": "task", "payload": {"name": "model"}}


def test_ids_can_be_left_out() -> None:
    raw, _ = frames(RunEvent("9-9", "values", {}), frozenset({"values"}), {}, ids=False)
    assert parse(raw[0])[2] is None

"""The fork-branch chain walk (`persistence/branches.py`) and the persist node's choice
of a turn's parent (`known_parent`): pure functions, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from langchain_core.messages import AIMessage, HumanMessage

from agent_server.graph.nodes.persist import known_parent
from agent_server.graph.state import RunFlags
from agent_server.persistence.branches import (
    ROOT,
    TurnLink,
    branch,
    choose_head,
    effective_parents,
    is_linear,
)

T0 = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)


def links(*pairs: tuple[str, str | None]) -> list[TurnLink]:
    """Rows in id order, one minute apart: (turn id, parent column)."""
    return [
        TurnLink(i + 1, turn, parent, T0 + timedelta(minutes=i))
        for i, (turn, parent) in enumerate(pairs)
    ]


def ids(chain: list[TurnLink]) -> list[str]:
    return [link.turn_id for link in chain]


FORKED = links(("A", ROOT), ("B", "A"), ("C", "A"), ("D", "B"))
"""A, B; an edit of B from after A gives C; back on B's branch, D."""


def test_the_branch_of_each_head() -> None:
    assert ids(branch(FORKED, "D")) == ["A", "B", "D"]
    assert ids(branch(FORKED, "C")) == ["A", "C"]
    assert ids(branch(FORKED, "B")) == ["A", "B"]
    assert ids(branch(FORKED, "A")) == ["A"]


def test_no_head_or_an_unknown_one_is_the_newest_turns_branch() -> None:
    assert ids(branch(FORKED, None)) == ["A", "B", "D"]
    assert ids(branch(FORKED, "not-stored")) == ["A", "B", "D"]
    assert branch([], None) == []


def test_legacy_rows_follow_the_previous_row() -> None:
    legacy = links(("A", None), ("B", None), ("C", None))
    assert effective_parents(legacy) == {"A": ROOT, "B": "A", "C": "B"}
    assert ids(branch(legacy, None)) == ["A", "B", "C"]
    assert is_linear(legacy, "C")
    # A fork recorded after the upgrade, from the first legacy turn.
    upgraded = [*legacy, TurnLink(4, "D", "A")]
    assert ids(branch(upgraded, "D")) == ["A", "D"]
    assert ids(branch(upgraded, "C")) == ["A", "B", "C"]


def test_a_parent_from_another_session_is_a_root_and_a_loop_ends() -> None:
    copied = links(("A", "turn-of-the-source-thread"), ("B", "A"))
    assert ids(branch(copied, "B")) == ["A", "B"]
    looped = [TurnLink(1, "A", "B"), TurnLink(2, "B", "A")]
    assert ids(branch(looped, "B")) == ["A", "B"]


def test_linear_means_every_turn_follows_the_previous_and_the_head_is_newest() -> None:
    linear = links(("A", ROOT), ("B", "A"), ("C", "B"))
    assert is_linear(linear, "C") and is_linear(linear, None) and is_linear([], None)
    assert not is_linear(linear, "B")
    assert not is_linear(FORKED, "D")
    assert not is_linear(links(("A", ROOT), ("B", ROOT)), "B")


def test_choose_head() -> None:
    assert choose_head([], "A") is None
    assert choose_head(FORKED, None) == "D"
    assert choose_head(FORKED, "gone") == "D"
    assert choose_head(FORKED, "C") == "C"
    # A checkpoint written after every stored turn keeps its head (a paused fork)...
    assert choose_head(FORKED, "C", as_of=T0 + timedelta(hours=1)) == "C"
    # ...one older than the newest turn is behind the transcript: the newest wins.
    assert choose_head(FORKED, "C", as_of=T0 + timedelta(minutes=2, seconds=30)) == "D"
    assert choose_head(FORKED, "D", as_of=T0) == "D"


def test_known_parent_comes_from_the_state() -> None:
    flags = RunFlags()
    current = HumanMessage("now", id="t3")
    assert known_parent({"turn_id": "t2"}, [current], "t3", flags) == "t2"
    # Re-running an already stored turn: never its own parent.
    assert known_parent({"turn_id": "t3"}, [current], "t3", flags) == ROOT
    restored = [
        HumanMessage("one", id="t1:user"),
        AIMessage("1", id="t1:ai"),
        HumanMessage("two", id="t2:user"),
        AIMessage("2", id="t2:ai"),
        current,
    ]
    assert known_parent(None, restored, "t3", flags) == "t2"
    # Nothing before this turn: a new session, a fork from the start, a looked-up past
    # that SQL did not have.
    assert known_parent(None, [current], "t3", RunFlags(no_past=True)) == ROOT
    assert known_parent(None, [current], "t3", flags) == ROOT
    client_made = [HumanMessage("mine", id="x"), AIMessage("ok", id="y"), current]
    assert known_parent(None, client_made, "t3", RunFlags(as_given=True)) == ROOT
    # A state a client filled, with no stored turn in it: only SQL can tell.
    assert known_parent(None, client_made, "t3", flags) is None

"""Which stored turns make up one fork branch of a thread (pure, no I/O).

A run from an earlier checkpoint ("edit a message", "re-run from here") starts a
new branch, so a thread's turns form a tree: each row of `turns` names the turn
before it on its branch in `parent_turn_id`. The encoding (see migration 0003):

- `''` (`ROOT`): the first turn of its branch, nothing before it;
- a turn id: the previous turn on the branch;
- NULL: a row written before forks were recorded. Sessions were linear then, so
  its parent is the previous row of the session in id order.

A parent that is not a turn of this session (a thread copied from another, a
turn id from a checkpoint that never reached SQL) ends the chain like a root.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

ROOT = ""
"""`parent_turn_id` of a turn with no turn before it on its branch."""


@dataclass(frozen=True, slots=True)
class TurnLink:
    """The few columns of a turn row that place it in the session's tree."""

    id: int
    """The row's autoincrement id: a parent is always stored before its children."""
    turn_id: str
    parent_turn_id: str | None
    created_at: datetime | None = None


def effective_parents(links: Sequence[TurnLink]) -> dict[str, str]:
    """Each turn's parent (`ROOT` for none), legacy NULLs resolved to the previous row.
    `links` must be one session's rows in id order."""
    parents: dict[str, str] = {}
    previous = ROOT
    for link in links:
        parent = link.parent_turn_id
        parents[link.turn_id] = previous if parent is None else parent
        previous = link.turn_id
    return parents


def choose_head(
    links: Sequence[TurnLink], head: str | None, *, as_of: datetime | None = None
) -> str | None:
    """The turn the branch ends at, from `head`, the thread's latest checkpoint's last
    turn: that turn if it is stored, else (no checkpoint, none with a stored turn,
    or one whose turn is not in SQL) the newest turn. None only for no turns.

    A checkpoint without a last turn is no evidence of an empty branch: a message
    that failed after the hot state was lost leaves one too.

    `as_of` is when that checkpoint was written. A turn stored after it means the
    checkpoint is behind the transcript (the persist node committed, then the
    checkpoint write failed): the client was told that turn succeeded, so the
    newest turn is the head. A checkpoint that merely sits on another branch (a
    fork run paused or failed) was written after every stored turn: it keeps its head.
    """
    if not links:
        return None
    newest = links[-1]
    if head is None or head not in {link.turn_id for link in links}:
        return newest.turn_id
    if (
        as_of is not None
        and head != newest.turn_id
        and newest.created_at is not None
        and newest.created_at > as_of
    ):
        return newest.turn_id
    return head


def branch(links: Sequence[TurnLink], head: str | None) -> list[TurnLink]:
    """The turns of the branch ending at `head`, oldest first (the newest turn's
    branch for None or a turn not in `links`). `links` must be one session's rows in
    id order."""
    if not links:
        return []
    by_turn = {link.turn_id: link for link in links}
    parents = effective_parents(links)
    current = head if head in by_turn else links[-1].turn_id
    chain: list[TurnLink] = []
    seen: set[str] = set()
    while current in by_turn and current not in seen:  # `seen`: a loop cannot hang us
        seen.add(current)
        chain.append(by_turn[current])
        current = parents[current]
    chain.reverse()
    return chain


def is_linear(links: Sequence[TurnLink], head: str | None) -> bool:
    """Every turn follows the previous row and the head is the newest: the branch is
    all of the session's turns, in id order (no walk, no id list needed)."""
    if not links:
        return True
    if head is not None and head != links[-1].turn_id:
        return False
    previous = ROOT
    for link in links:
        if link.parent_turn_id is not None and link.parent_turn_id != previous:
            return False
        previous = link.turn_id
    return True

"""The latest checkpoint of each session as this replica last wrote or read it.

Why: a turn starts by reading its session's latest checkpoint, which is the whole
conversation window (a few KB to a few hundred KB). Most of the time this replica
wrote that very checkpoint at the end of the previous turn. `AsyncRedisSaver` then
sends the id it knows along with the read, and Redis answers "unchanged" (a few
bytes) instead of the state, like an HTTP `If-None-Match`. Redis decides, inside
the read script, so this is exact with any number of replicas: another replica's
newer checkpoint, pending writes, a deleted or expired session all get the full
answer (or none). The read sends the id and the SHA-1 of the record it knows, so
putting the same checkpoint id again is seen too. The channel values need no such
check: a value is stored under its (channel, version), and `get_next_version` makes
every version unique (a random suffix, as LangGraph's own savers do).

Kept serialized, as Redis would return them: every read still deserializes, so no
caller can change what the next one gets. Root namespace only (subgraph namespaces
are new in every run). Bounded by bytes, least recently used first out.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

ENTRY_OVERHEAD = 200
"""Bytes counted per entry on top of its values (objects, dict slot)."""


@dataclass(frozen=True, slots=True)
class KnownCheckpoint:
    """A checkpoint as `READ` returns it: id, record, and the values of the record's
    blob fields in header order (`None` for a field Redis does not hold)."""

    checkpoint_id: str
    record: bytes
    blobs: tuple[bytes | None, ...]
    digest: str = field(init=False)
    """SHA-1 of `record`, hex: what Redis compares with the stored record."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", hashlib.sha1(self.record).hexdigest())

    @property
    def size(self) -> int:
        return ENTRY_OVERHEAD + len(self.record) + sum(len(b) for b in self.blobs if b)


class KnownLatest:
    """thread id -> its latest root-namespace checkpoint; at most `max_bytes` in all."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.unchanged_reads = 0
        """Reads Redis answered with "unchanged": observable in tests and benchmarks."""
        self._entries: OrderedDict[str, KnownCheckpoint] = OrderedDict()
        self._bytes = 0

    def get(self, thread_id: str) -> KnownCheckpoint | None:
        entry = self._entries.get(thread_id)
        if entry is not None:
            self._entries.move_to_end(thread_id)
        return entry

    def remember(self, thread_id: str, entry: KnownCheckpoint) -> None:
        self.forget(thread_id)
        size = entry.size
        if size > self.max_bytes:
            return
        self._entries[thread_id] = entry
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.size

    def forget(self, thread_id: str) -> KnownCheckpoint | None:
        """Drop the thread's entry; returns it (None if there was none)."""
        entry = self._entries.pop(thread_id, None)
        if entry is not None:
            self._bytes -= entry.size
        return entry

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

"""Redis storage layout of the checkpointer: key names, value encodings, Lua scripts.

Everything `AsyncRedisSaver` stores lives here, next to the scripts that touch it,
so the layout is written down once. Only core commands are used (hashes, sets,
sorted sets, Lua with its built-in cmsgpack): it runs on Redis >= 6, Valkey, managed
Redis and Redis Cluster without modules.

Key layout
----------
One thread is a fixed set of eight keys. Every key carries the hash tag
`{<thread_id>}`, so a thread lives in one cluster slot and each script below can
run atomically on it; every script touches only the keys it is given in `KEYS`
(this order), never a key it builds itself. There is no global registry key.

    <p>:{<thread>}:idx   ZSET  score 0, member  "<ns>\\0<checkpoint_id>"
                         Orders checkpoints. uuid6 ids sort lexicographically in
                         time order, so ZREVRANGEBYLEX over the "<ns>\\0" prefix
                         gives a namespace's checkpoints newest first.
    <p>:{<thread>}:cp    HASH  "<ns>\\0<checkpoint_id>" -> checkpoint record
                         (checkpoint without channel values + metadata, one value).
    <p>:{<thread>}:blob  HASH  "<ns>\\0<channel>\\0<version>" -> typed channel value
                         Stored once per (channel, version), like checkpoint-postgres'
                         `checkpoint_blobs`: an unchanged channel is never copied.
                         "" is the "empty" sentinel (channel versioned, no value).
    <p>:{<thread>}:bref  HASH  same fields as `blob` -> number of checkpoints whose
                         channel_versions refer to that blob. A blob is deleted when
                         its count drops to 0 (pruning, trimming, delete_for_runs).
    <p>:{<thread>}:w     HASH  "<ns>\\0<checkpoint_id>\\0<task_id>\\0<idx>" -> write
                         record (pending writes, like `checkpoint_writes`).
    <p>:{<thread>}:widx  ZSET  score 0, members = the fields of `w`, so the writes of
                         one checkpoint are one ZRANGEBYLEX away.
    <p>:{<thread>}:ns    SET   checkpoint namespaces of the thread ("" is the root;
                         subgraphs add "<node>:<task_id>" ones, a new one per run).
    <p>:{<thread>}:runs  ZSET  score 0, member "<run_id>\\0<ns>\\0<checkpoint_id>"
                         Finds a run's checkpoints for `adelete_for_runs`.

`<p>` is the saver's `key_prefix`. Namespaces and channel names must not contain
NUL bytes (LangGraph never produces them).

Values
------
- typed value: `<serde type>\\0<serde bytes>` (raw bytes from `dumps_typed`).
- checkpoint record: `<n>:<header><typed body>`. The header is an `n`-byte msgpack
  array [boundary flag (0|1), run_id, parent id, blob field...], the blob fields
  being those of the checkpoint's channel_versions: Lua reads it with `cmsgpack`
  (HMGET of the blobs, reference counts, run index) without building strings. Only
  Python reads the body, a serde value of [checkpoint without channel_values,
  metadata]. The boundary flag is 1 when no DeltaChannel of the checkpoint depends
  on ancestors' writes (metadata `counters_since_delta_snapshot` has no pending
  updates); trimming never cuts the parent chain above the newest such checkpoint.
- write record: length-prefixed items (`<len>:<bytes>`) task_path, task_id, idx,
  channel, then the typed value; Python sorts a checkpoint's writes by
  (task_path, task_id, idx), LangGraph's `writes_sort_key`.

TTL
---
Every write script ends with PEXPIRE on all eight keys (read scripts too when
`refresh_on_read`), inside the same script: all keys of a thread share one
deadline, so no blob can expire while a checkpoint referring to it is alive, and
the whole thread disappears together once idle for the TTL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import ormsgpack

KEY_SUFFIXES = ("idx", "cp", "blob", "bref", "w", "widx", "ns", "runs")
"""The eight keys of a thread, in the order the Lua scripts expect them in KEYS."""

SEP = b"\0"
EMPTY = b""
"""Stored value of the "empty" sentinel: the channel has a version but no value."""


def thread_keys(prefix: str, thread_id: str) -> list[str]:
    """The eight keys of `thread_id`, in `KEY_SUFFIXES` order."""
    if not thread_id or thread_id[0] == "}":
        # An empty hash tag would spread the thread over several cluster slots.
        raise ValueError(f"thread_id must be non-empty and not start with '}}': {thread_id!r}")
    base = f"{prefix}:{{{thread_id}}}:"
    return [base + suffix for suffix in KEY_SUFFIXES]


def thread_pattern(prefix: str, suffix: str) -> str:
    """SCAN pattern matching one key type of every thread under `prefix`."""
    escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in prefix)
    return f"{escaped}:{{*}}:{suffix}"


def thread_id_from_key(prefix: str, suffix: str, key: bytes) -> str:
    """Inverse of `thread_keys` for one key type."""
    text = key.decode()
    return text[len(prefix) + 2 : -(len(suffix) + 2)]


# --- value encodings ---------------------------------------------------------------------


def blob_field(ns: str, channel: str, version: object) -> str:
    """Field of a channel value in the `blob` and `bref` hashes."""
    return f"{ns}\0{channel}\0{version}"


def channel_of(field: str) -> str:
    """Channel name of a `blob_field`."""
    return field.split("\0", 2)[1]


def _item(data: bytes) -> bytes:
    return b"%d:%s" % (len(data), data)


def _read_item(buf: bytes, pos: int) -> tuple[bytes, int]:
    colon = buf.index(b":", pos)
    end = colon + 1 + int(buf[pos:colon])
    return buf[colon + 1 : end], end


def pack_typed(typed: tuple[str, bytes]) -> bytes:
    return typed[0].encode() + SEP + typed[1]


def unpack_typed(value: bytes) -> tuple[str, bytes]:
    cut = value.index(SEP)
    return value[:cut].decode(), value[cut + 1 :]


def pack_record(
    *,
    boundary: bool,
    run_id: str,
    parent_id: str | None,
    blob_fields: Iterable[str],
    body: tuple[str, bytes],
) -> bytes:
    """Encode a checkpoint record (see the module docstring)."""
    header = ormsgpack.packb([1 if boundary else 0, run_id, parent_id or "", *blob_fields])
    return b"%d:%s%s" % (len(header), header, pack_typed(body))


def unpack_record(record: bytes) -> tuple[list[Any], tuple[str, bytes]]:
    """Decode a checkpoint record into (header, typed body); see `RECORD_*` for the
    header's fields."""
    colon = record.index(b":")
    body_start = colon + 1 + int(record[:colon])
    return ormsgpack.unpackb(record[colon + 1 : body_start]), unpack_typed(record[body_start:])


RECORD_BOUNDARY, RECORD_RUN_ID, RECORD_PARENT, RECORD_BLOBS = 0, 1, 2, 3
"""Indexes into a record header: flag, run id, parent id, then the blob fields."""


def pack_write(
    task_path: str, task_id: str, idx: int, channel: str, typed: tuple[str, bytes]
) -> bytes:
    return b"".join(
        (
            _item(task_path.encode()),
            _item(task_id.encode()),
            _item(str(idx).encode()),
            _item(channel.encode()),
            pack_typed(typed),
        )
    )


def unpack_write(value: bytes) -> tuple[str, str, int, str, tuple[str, bytes]]:
    """Decode a write record into (task_path, task_id, idx, channel, typed value)."""
    task_path, pos = _read_item(value, 0)
    task_id, pos = _read_item(value, pos)
    idx, pos = _read_item(value, pos)
    channel, pos = _read_item(value, pos)
    return (
        task_path.decode(),
        task_id.decode(),
        int(idx),
        channel.decode(),
        unpack_typed(value[pos:]),
    )


# --- Lua ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1, run with EVALSHA (EVAL once on NOSCRIPT)."""

    name: str
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


_LIB = r"""
local K_IDX, K_CP, K_BLOB, K_BREF = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_W, K_WIDX, K_NS, K_RUNS = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local SEP = '\0'
local CHUNK = 500

local function touch(ttl)
  if ttl > 0 then
    for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end

-- header of a checkpoint record: {boundary, run_id, parent_id, blob_field...}
local function header(rec)
  local c = string.find(rec, ':', 1, true)
  return cmsgpack.unpack(string.sub(rec, c + 1, c + tonumber(string.sub(rec, 1, c - 1))))
end

local function prefix_range(p)
  return '[' .. p .. SEP, '(' .. p .. '\1'
end

local function ns_of(member)
  return string.match(member, '^(.*)%z')
end

-- HMGET of t[from..#t] (false where missing), chunked to stay within unpack limits
local function hmget(key, t, from)
  local out = {}
  for i = from, #t, CHUNK do
    local vals = redis.call('HMGET', key, unpack(t, i, math.min(i + CHUNK - 1, #t)))
    for j = 1, #vals do out[#out + 1] = vals[j] end
  end
  return out
end

local function hdel(key, t)
  for i = 1, #t, CHUNK do
    redis.call('HDEL', key, unpack(t, i, math.min(i + CHUNK - 1, #t)))
  end
end

-- add delta to the reference counts of a record's blobs; drop blobs nobody refers to
local function ref(h, delta)
  for i = 4, #h do
    if redis.call('HINCRBY', K_BREF, h[i], delta) <= 0 then
      redis.call('HDEL', K_BREF, h[i])
      redis.call('HDEL', K_BLOB, h[i])
    end
  end
end

local function drop_checkpoint(member)
  local rec = redis.call('HGET', K_CP, member)
  if rec then
    local h = header(rec)
    ref(h, -1)
    if h[2] ~= '' then redis.call('ZREM', K_RUNS, h[2] .. SEP .. member) end
    redis.call('HDEL', K_CP, member)
  end
  redis.call('ZREM', K_IDX, member)
  local lo, hi = prefix_range(member)
  local fields = redis.call('ZRANGEBYLEX', K_WIDX, lo, hi)
  if #fields > 0 then
    hdel(K_W, fields)
    redis.call('ZREMRANGEBYLEX', K_WIDX, lo, hi)
  end
end

-- Keep the newest `keep` checkpoints of ns, plus older ones back to the newest
-- DeltaChannel boundary at or before the oldest kept one; drop the rest.
local function trim(ns, keep)
  local lo, hi = prefix_range(ns)
  local n = redis.call('ZLEXCOUNT', K_IDX, lo, hi)
  if n <= keep then return 0 end
  local ids = redis.call('ZRANGEBYLEX', K_IDX, lo, hi, 'LIMIT', 0, n - keep + 1)
  local cut = 0
  for j = #ids, 1, -1 do
    local rec = redis.call('HGET', K_CP, ids[j])
    if (not rec) or header(rec)[1] == 1 then
      cut = j
      break
    end
  end
  for j = 1, cut - 1 do drop_checkpoint(ids[j]) end
  if cut > 1 then return cut - 1 end
  return 0
end

-- bytewise a < b (Lua's own `<` uses the server's locale collation)
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- Drop subgraph namespaces whose newest checkpoint predates the oldest root checkpoint
-- left: the root step that ran them is gone (a subgraph's checkpoints are all newer
-- than the root checkpoint that scheduled it, and the latest root one is always kept).
local function drop_stale_namespaces()
  local lo, hi = prefix_range('')
  local oldest = redis.call('ZRANGEBYLEX', K_IDX, lo, hi, 'LIMIT', 0, 1)[1]
  if not oldest then return 0 end
  oldest = string.sub(oldest, 2)
  local dropped = 0
  local namespaces = redis.call('SMEMBERS', K_NS)
  table.sort(namespaces)
  for _, ns in ipairs(namespaces) do
    if ns ~= '' then
      local nlo, nhi = prefix_range(ns)
      local newest = redis.call('ZREVRANGEBYLEX', K_IDX, nhi, nlo, 'LIMIT', 0, 1)[1]
      if (not newest) or before(string.sub(newest, #ns + 2), oldest) then
        for _, m in ipairs(redis.call('ZRANGEBYLEX', K_IDX, nlo, nhi)) do
          drop_checkpoint(m)
          dropped = dropped + 1
        end
        redis.call('SREM', K_NS, ns)
      end
    end
  end
  return dropped
end

local function forget_ns_if_empty(ns)
  local lo, hi = prefix_range(ns)
  if redis.call('ZLEXCOUNT', K_IDX, lo, hi) == 0 then redis.call('SREM', K_NS, ns) end
end

-- {id, record, {blob per header field, false if missing}, {write...}} of one member
local function load_entry(member, ns, full)
  local rec = redis.call('HGET', K_CP, member)
  if not rec then return nil end
  local entry = {string.sub(member, #ns + 2), rec}
  if not full then return entry end
  entry[3] = hmget(K_BLOB, header(rec), 4)
  local lo, hi = prefix_range(member)
  local writes = {}
  for _, v in ipairs(hmget(K_W, redis.call('ZRANGEBYLEX', K_WIDX, lo, hi), 1)) do
    if v then writes[#writes + 1] = v end
  end
  entry[4] = writes
  return entry
end
"""


def _script(name: str, body: str) -> Script:
    return Script(name, _LIB + body)


PUT = _script(
    "put",
    r"""
-- ARGV: ttl_ms, keep, ns, member, record, run_id, then (blob field, blob) pairs
local ttl, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local ns, member, rec, run = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
for i = 7, #ARGV, 2 * CHUNK do
  redis.call('HSET', K_BLOB, unpack(ARGV, i, math.min(i + 2 * CHUNK - 1, #ARGV)))
end
ref(header(rec), 1)
if redis.call('HSETNX', K_CP, member, rec) == 0 then  -- the same checkpoint again
  local h = header(redis.call('HGET', K_CP, member))
  ref(h, -1)
  if h[2] ~= '' then redis.call('ZREM', K_RUNS, h[2] .. SEP .. member) end
  redis.call('HSET', K_CP, member, rec)
end
redis.call('ZADD', K_IDX, 0, member)
redis.call('SADD', K_NS, ns)
if run ~= '' then redis.call('ZADD', K_RUNS, 0, run .. SEP .. member) end
local trimmed = 0
if keep > 0 then
  trimmed = trim(ns, keep)
  if trimmed > 0 and ns == '' then trimmed = trimmed + drop_stale_namespaces() end
end
touch(ttl)
return trimmed
""",
)

PUT_WRITES = _script(
    "put_writes",
    r"""
-- ARGV: ttl_ms, "<ns>\0<checkpoint_id>\0<task_id>\0", then (idx, overwrite 0|1, record) triples
local ttl, prefix = tonumber(ARGV[1]), ARGV[2]
for i = 3, #ARGV - 2, 3 do
  local f = prefix .. ARGV[i]
  if ARGV[i + 1] == '1' then
    redis.call('HSET', K_W, f, ARGV[i + 2])
  else
    redis.call('HSETNX', K_W, f, ARGV[i + 2])
  end
  redis.call('ZADD', K_WIDX, 0, f)
end
touch(ttl)
return 0
""",
)

READ = _script(
    "read",
    r"""
-- ARGV: ttl_ms (0: no refresh), mode, ns, ...
--   latest  [<known id> <sha1>]       -> newest checkpoint of ns; just {{id}} when it
--                                        is <known id>, its record's SHA-1 is <sha1>
--                                        (a re-put changes it) and it has no writes
--   ids     <id>...                   -> these checkpoints
--   page    <before|''> <count> <0|1> -> newest `count` below `before`; 1: with values
-- returns {{id, record, {blob...}, {write...}}, ...} (blobs and writes only when full)
local ttl, mode, ns = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local lo, hi = prefix_range(ns)
local members, full = {}, true
if mode == 'latest' then
  members = redis.call('ZREVRANGEBYLEX', K_IDX, hi, lo, 'LIMIT', 0, 1)
  local known, digest = ARGV[4], ARGV[5]
  if known and members[1] == ns .. SEP .. known
      and redis.sha1hex(redis.call('HGET', K_CP, members[1]) or '') == digest then
    local wlo, whi = prefix_range(members[1])
    if #redis.call('ZRANGEBYLEX', K_WIDX, wlo, whi, 'LIMIT', 0, 1) == 0 then
      touch(ttl)
      return {{known}}
    end
  end
elseif mode == 'ids' then
  for i = 4, #ARGV do members[#members + 1] = ns .. SEP .. ARGV[i] end
else
  local top = hi
  if ARGV[4] ~= '' then top = '(' .. ns .. SEP .. ARGV[4] end
  members = redis.call('ZREVRANGEBYLEX', K_IDX, top, lo, 'LIMIT', 0, tonumber(ARGV[5]))
  full = ARGV[6] == '1'
end
local out = {}
for _, m in ipairs(members) do
  local entry = load_entry(m, ns, full)
  if entry then out[#out + 1] = entry end
end
if #out > 0 then touch(ttl) end
return out
""",
)

PRUNE = _script(
    "prune",
    r"""
-- ARGV: ttl_ms, keep -> number of checkpoints dropped over all namespaces
local ttl, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local dropped = 0
local namespaces = redis.call('SMEMBERS', K_NS)
table.sort(namespaces)
for _, ns in ipairs(namespaces) do
  dropped = dropped + trim(ns, keep)
  forget_ns_if_empty(ns)
end
if dropped > 0 then touch(ttl) end
return dropped
""",
)

DELETE_RUNS = _script(
    "delete_runs",
    r"""
-- ARGV: ttl_ms, run_id... -> number of checkpoints dropped
local ttl = tonumber(ARGV[1])
local dropped, namespaces, seen = 0, {}, {}
for i = 2, #ARGV do
  local run = ARGV[i]
  local lo, hi = prefix_range(run)
  for _, rm in ipairs(redis.call('ZRANGEBYLEX', K_RUNS, lo, hi)) do
    local member = string.sub(rm, #run + 2)
    drop_checkpoint(member)
    redis.call('ZREM', K_RUNS, rm)
    local ns = ns_of(member)
    if not seen[ns] then
      seen[ns] = true
      namespaces[#namespaces + 1] = ns
    end
    dropped = dropped + 1
  end
end
for _, ns in ipairs(namespaces) do forget_ns_if_empty(ns) end
if dropped > 0 then touch(ttl) end
return dropped
""",
)

COPY_OUT = _script(
    "copy_out",
    r"""
-- ARGV: ttl_ms -> {cp field/value..., blob field/value..., w field/value...}
local out = {redis.call('HGETALL', K_CP), redis.call('HGETALL', K_BLOB), redis.call('HGETALL', K_W)}
if #out[1] > 0 then touch(tonumber(ARGV[1])) end
return out
""",
)

COPY_IN = _script(
    "copy_in",
    r"""
-- ARGV: ttl_ms, n_cp, cp pairs..., n_blob, blob pairs..., write pairs...
-- Merges into the target: existing checkpoints, blobs and writes are kept.
local ttl = tonumber(ARGV[1])
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  local member, rec = ARGV[i], ARGV[i + 1]
  i = i + 2
  if redis.call('HSETNX', K_CP, member, rec) == 1 then
    local h = header(rec)
    ref(h, 1)
    redis.call('ZADD', K_IDX, 0, member)
    redis.call('SADD', K_NS, ns_of(member))
    if h[2] ~= '' then redis.call('ZADD', K_RUNS, 0, h[2] .. SEP .. member) end
  end
end
local nblob = tonumber(ARGV[i])
i = i + 1
for _ = 1, nblob do
  redis.call('HSETNX', K_BLOB, ARGV[i], ARGV[i + 1])
  i = i + 2
end
while i < #ARGV do
  redis.call('HSETNX', K_W, ARGV[i], ARGV[i + 1])
  redis.call('ZADD', K_WIDX, 0, ARGV[i])
  i = i + 2
end
touch(ttl)
return 0
""",
)

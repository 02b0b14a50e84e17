"""`AsyncRedisSaver`: LangGraph checkpoints on plain Redis, Cluster-safe, with a sliding TTL.

Why our own: the official `langgraph-checkpoint-redis` needs RedisJSON/RediSearch
(`unknown command 'FT.INFO'` on plain Redis), and the plain-Redis alternative loses
channel values when a TTL is set and breaks on Cluster (`MGET` across slots). This
saver uses only core commands and keeps each thread in one cluster slot; the key
layout, value encodings and Lua scripts live in `redis_keys`.

Round trips: `aput`, `aput_writes` and `aget_tuple` are one EVALSHA each (an EVAL
once more if the server has not cached the script yet), `adelete_thread` is one
UNLINK. On a standalone `Redis` the scripts go through `DirectLane`, which skips
redis-py's per-command machinery (half the client cost of a round trip); Cluster
and unusual clients use `execute_command`. Serialization is LangGraph's serde
(`dumps_typed`/`loads_typed`), raw bytes.

Trade-offs:
- `alist(None, ...)` and `adelete_for_runs(...)` have no thread to start from and no
  global registry key (it would live in one slot and grow forever), so they walk
  the keyspace with SCAN in batches (`scan_count` keys per call, every primary on
  Cluster): never one blocking KEYS, but their total cost grows with the keyspace.
  Everything scoped to a thread only touches that thread's eight keys.
- Across namespaces of one thread `alist` merges newest first by checkpoint id;
  across threads it yields thread by thread (SCAN order), newest first within each.
- Metadata filters are applied in Python (equality per top-level key); a filtered
  `alist` reads records first and loads channel values only for the matches.
- `acopy_thread` moves the whole thread through two Lua scripts (an atomic snapshot
  of the source, an atomic merge into the target): Redis is busy for a time that
  grows with the thread's size (about 1 ms per MB).
- Channel values pass through Lua, and every KB entering or leaving a script costs
  the server ~1 us (Lua string allocation and GC; measured on Redis 7.0): with the
  benchmark's 6.4 KB message window that is ~13 of the ~45 us of script time per
  aput + aget_tuple. Writing the values with a plain HSET inside MULTI/EXEC instead
  saved ~7 us of server time but cost ~4 us of client CPU: not done.
- Trimming (`max_checkpoints_per_thread`) and `aprune(strategy="keep_latest")` are
  DeltaChannel-aware: they keep older checkpoints back to the newest one whose delta
  channels need no ancestor writes. `adelete_for_runs` deletes exactly what it is
  asked to, as the base class documents.

Inside `deferred(thread_id)` (a run with `durability="async"`, `deferred_writes.py`)
that thread's `aput`/`aput_writes` are queued and sent together as one pipeline
when the block ends, after `DEFER_SECONDS`, or before any read, delete or copy of
the thread on this saver: one round trip per run instead of one per step. Another
replica reading the thread while the run goes sees it as of the last send (at most
`DEFER_SECONDS` behind), the latitude LangGraph's `async` durability gives.

The saver is async-only: the sync methods raise `NotImplementedError`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from operator import itemgetter
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    SerializerProtocol,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agent_server.persistence import group_commit
from agent_server.persistence.deferred_writes import deferral
from agent_server.persistence.redis_keys import (
    COPY_IN,
    COPY_OUT,
    DELETE_RUNS,
    EMPTY,
    PRUNE,
    PUT,
    PUT_WRITES,
    READ,
    RECORD_BLOBS,
    RECORD_PARENT,
    Script,
    blob_field,
    channel_of,
    pack_record,
    pack_typed,
    pack_write,
    thread_id_from_key,
    thread_keys,
    thread_pattern,
    unpack_record,
    unpack_typed,
    unpack_write,
)
from agent_server.persistence.redis_known import KnownCheckpoint, KnownLatest
from agent_server.persistence.redis_time import redis_wait

RedisClient = Redis | RedisCluster
DEFAULT_KNOWN_LATEST_BYTES = 32 * 1024 * 1024
"""Memory for latest checkpoints this saver knows (`redis_known`): ~3,000 sessions of
the benchmark's 20-message window."""
PAGE_SIZE = 25
"""Checkpoints fetched per round trip by `alist`. Each comes with its channel values,
so the page stays small: a reply holds PAGE_SIZE full states."""
PRUNE_STRATEGIES = ("keep_latest", "delete")
_write_order = itemgetter(0, 1, 2)  # (task_path, task_id, idx), LangGraph's writes_sort_key


Arg = bytes | str | int
"""What the saver passes to Redis: raw bytes, text (UTF-8) or integers."""


def _async_only(method: str) -> NotImplementedError:
    return NotImplementedError(f"AsyncRedisSaver is async-only: use {method}")


def pack_command(command: Sequence[Arg]) -> bytes:
    """`command` as one RESP2 array of bulk strings, the bytes redis-py would send.

    Hand-rolled for our three argument types: redis-py's generic `pack_command`
    (an encoder call and type checks per argument, a list of chunks) cost ~4 us more
    per EVALSHA of `aput` (measured, 16 arguments, one 6.4 KB value)."""
    parts = [b"*%d\r\n" % len(command)]
    append = parts.append
    for arg in command:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        append(b"$%d\r\n" % len(arg))
        append(arg)
        append(b"\r\n")
    return b"".join(parts)


class DirectLane:
    """Sends one command on a pooled connection of a standalone `Redis`, without the
    per-command machinery of `Redis.execute_command`.

    Why: `aput` + `aget_tuple` make two round trips per turn, and in the checkpointer
    benchmark `execute_command` cost ~40 us of CPU per EVALSHA where the socket
    exchange itself needs ~20 (retry wrapper, observability hooks, `asyncio.wait_for`
    around the write, which creates a Task, when a `socket_timeout` is set). Taking
    and returning the connection with the pool's lists directly instead of
    `get_connection`/`release` (a lock, metric hooks, an event and a liveness probe
    each) saved another ~25 us per turn (measured, same run: 0.46x -> 0.49x InMemory).

    What it keeps: the pool's connections (sharing, `max_connections`, `aclose`),
    `socket_timeout` (one deadline over write + read), `health_check_interval`,
    reconnects asked for by server notifications, disconnecting a connection whose
    exchange failed or was cancelled (no stale reply for the next user), and
    retries: a connection or timeout error is retried once through
    `execute_command`, with the client's own retry policy, unless that policy
    allows none.
    """

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.pool = client.connection_pool
        self.watchdog = _Watchdog()

    @staticmethod
    def supports(client: Redis | RedisCluster) -> bool:
        """Standalone client on the default pool, no credential provider, and the
        pool internals this lane relies on. Cluster routing, blocking/sentinel pools,
        a single shared connection and re-authenticating connections keep the
        regular path. RESP2 and RESP3 both work: the connection's parser skips
        RESP3 push messages for us, as it does for `execute_command`."""
        if not isinstance(client, Redis) or client.single_connection_client:
            return False
        pool = client.connection_pool
        return (
            type(pool) is ConnectionPool
            and pool.connection_kwargs.get("credential_provider") is None
            and isinstance(getattr(pool, "_available_connections", None), list)
            and isinstance(getattr(pool, "_in_use_connections", None), set)
            and isinstance(getattr(pool, "_lock", None), asyncio.Lock)
        )

    async def execute(self, command: Sequence[Arg]) -> Any:
        """Send `command`, return its raw reply; raise its error reply."""
        pool = self.pool
        if pool._lock.locked():  # being disconnected: the regular path waits for it
            return await self.client.execute_command(*command)
        payload = pack_command(command)
        conn = pool.get_available_connection()
        try:
            if not conn.is_connected:
                await pool.ensure_connection(conn)
            return await _exchange(conn, payload, self.watchdog)
        except (RedisConnectionError, RedisTimeoutError):
            if not _retries_allowed(conn):
                raise
        finally:
            await self._give_back(conn)
        return await self.client.execute_command(*command)

    async def execute_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any] | None:
        """Send `commands` in one write and read their replies, error replies included
        (as exception objects, not raised): a pipeline without redis-py's per-command
        stack, ~60 us of CPU a command in a run's 13-script pipeline. None: the lane
        could not send them (pool busy disconnecting, or a connection error that the
        client's retry policy may retry): the caller takes redis-py's pipeline."""
        pool = self.pool
        if pool._lock.locked():
            return None
        payload = b"".join(pack_command(command) for command in commands)
        conn = pool.get_available_connection()
        try:
            if not conn.is_connected:
                await pool.ensure_connection(conn)
            return await _exchange(conn, payload, self.watchdog, replies=len(commands))
        except (RedisConnectionError, RedisTimeoutError):
            if not _retries_allowed(conn):
                raise
        finally:
            await self._give_back(conn)
        return None

    async def _give_back(self, conn: AbstractConnection) -> None:
        """`pool.release` without its lock, event and metrics: back to the idle list,
        disconnected first if a server notification asked for a reconnect."""
        pool = self.pool
        pool._in_use_connections.discard(conn)
        should_reconnect = getattr(conn, "should_reconnect", None)  # not in older redis-py
        if should_reconnect is not None and should_reconnect():
            await conn.disconnect()
        pool._available_connections.append(conn)


def _retries_allowed(conn: AbstractConnection) -> bool:
    """Whether the connection's retry policy allows at least one retry."""
    get_retries = getattr(conn.retry, "get_retries", None)  # redis-py >= 5.1
    return bool(get_retries() if get_retries else getattr(conn.retry, "_retries", 0))


async def _exchange(
    conn: AbstractConnection, payload: bytes, watchdog: _Watchdog, *, replies: int | None = None
) -> Any:
    """Write `payload` and read one reply (raising an error reply) or, with `replies`,
    that many (a list, error replies in it), under the connection's socket timeout;
    any failure (or cancellation) in between disconnects the connection, as
    redis-py does, so a half-read reply can never reach the next command."""
    loop = asyncio.get_running_loop()
    interval = conn.health_check_interval
    if interval and loop.time() > conn.next_health_check:
        await conn.check_health()
    # The request's Redis time bounds this exchange too (redis_time.py).
    with redis_wait(conn.socket_timeout) as timeout:
        return await _timed_exchange(
            conn, payload, watchdog, loop, seconds=timeout, replies=replies
        )


async def _timed_exchange(
    conn: AbstractConnection,
    payload: bytes,
    watchdog: _Watchdog,
    loop: asyncio.AbstractEventLoop,
    *,
    seconds: float | None,
    replies: int | None = None,
) -> Any:
    """`_exchange` under a deadline of `seconds` (the `_Watchdog`'s, not a task's)."""
    interval = conn.health_check_interval
    deadline = watchdog.deadline(loop, seconds) if seconds is not None else None
    try:
        try:
            conn._writer.write(payload)  # type: ignore[union-attr]
            await conn._writer.drain()  # type: ignore[union-attr]
            if replies is None:
                reply = await conn._parser.read_response()
            else:
                reply = [await conn._parser.read_response() for _ in range(replies)]
        finally:
            if deadline is not None:
                deadline.cancel()
    except asyncio.CancelledError:
        await conn.disconnect(nowait=True)
        if deadline is not None and deadline.timed_out():
            raise RedisTimeoutError(f"Timeout talking to Redis at {conn!r}") from None
        raise
    except OSError as exc:
        await conn.disconnect(nowait=True)
        raise RedisConnectionError(f"Error talking to Redis at {conn!r}: {exc}") from exc
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    if interval:
        conn.next_health_check = loop.time() + interval
    if replies is None and isinstance(reply, ResponseError):
        raise reply
    return reply


class _Deadline:
    """One exchange's timeout, enforced by a `_Watchdog`: when overdue it cancels the
    exchange's task, and tells that cancellation apart from the caller's own with
    `Task.cancelling`/`uncancel`, as `asyncio.timeout` does."""

    __slots__ = ("_baseline", "_fired", "_task", "_watchdog", "at")

    def __init__(self, watchdog: _Watchdog, task: asyncio.Task[Any], at: float) -> None:
        self._watchdog = watchdog
        self._task = task
        self._baseline = task.cancelling()
        self._fired = False
        self.at = at

    def expire(self) -> None:
        self.cancel()
        self._fired = True
        self._task.cancel()

    def cancel(self) -> None:
        """The exchange is over (or never had a deadline): stop watching it."""
        self._watchdog.forget(self)

    def timed_out(self) -> bool:
        """Whether the CancelledError being handled is this deadline's own (and only
        this one's: a cancellation from elsewhere still propagates). Call it once,
        from the handler: it takes back the deadline's cancellation request."""
        return self._fired and self._task.uncancel() <= self._baseline


class _Watchdog:
    """Enforces the socket timeouts of a lane's exchanges with at most one pending
    loop timer, instead of one per exchange.

    Why: `asyncio.timeout` cost ~20 us of CPU per aput + aget_tuple pair in the
    checkpointer benchmark (uvloop), and even a bare `call_later` per exchange ~9
    (a libuv timer allocated, started, stopped and closed each time; measured:
    0.52-0.58x InMemory vs 0.54-0.61x without any timeout, same runs). Here an
    exchange costs a set insert and removal, and the timer fires about once per
    timeout period to cancel whatever is overdue."""

    __slots__ = ("_deadlines", "_loop", "_timer", "_timer_at")

    SLACK = 0.001
    """Loop timers have ~1 ms resolution and may fire that much early (asyncio's own
    loop allows its clock resolution the same way)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadlines: set[_Deadline] = set()

    def deadline(self, loop: asyncio.AbstractEventLoop, seconds: float) -> _Deadline:
        """Start watching the current task's exchange, `seconds` from now."""
        if loop is not self._loop:  # first use, or another event loop: start afresh
            self._loop, self._timer, self._deadlines = loop, None, set()
        task = asyncio.current_task(loop)
        assert task is not None, "a deadline needs a running task"
        deadline = _Deadline(self, task, loop.time() + seconds)
        self._deadlines.add(deadline)
        if self._timer is None or deadline.at < self._timer_at:
            self._arm(deadline.at)
        return deadline

    def forget(self, deadline: _Deadline) -> None:
        self._deadlines.discard(deadline)

    def _arm(self, at: float) -> None:
        assert self._loop is not None
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = self._loop.call_at(at, self._patrol), at

    def _patrol(self) -> None:
        assert self._loop is not None
        self._timer = None
        due = self._loop.time() + self.SLACK
        for deadline in [d for d in self._deadlines if d.at <= due]:
            deadline.expire()
        if self._deadlines:
            self._arm(min(d.at for d in self._deadlines))


def _namespace(configurable: dict[str, Any]) -> str:
    ns = configurable.get("checkpoint_ns", "")
    if "\0" in ns:  # NUL separates the parts of members and fields
        raise ValueError(f"checkpoint_ns must not contain NUL bytes: {ns!r}")
    return ns


def _is_delta_boundary(metadata: CheckpointMetadata) -> bool:
    """True when no DeltaChannel of this checkpoint needs ancestors' writes to rebuild."""
    counters = metadata.get("counters_since_delta_snapshot")
    if not counters:
        return True
    try:
        return all(int(updates) == 0 for updates, _ in counters.values())
    except (TypeError, ValueError):
        return False


class _Deferred:
    """One thread's queued script calls while a `deferred` block is open."""

    __slots__ = ("commands", "depth", "failure", "lock", "timer")

    def __init__(self) -> None:
        self.commands: list[tuple[Script, list[str], list[Any]]] = []
        self.depth = 0
        self.failure: BaseException | None = None
        self.lock = asyncio.Lock()  # one send at a time: the queue's order is the order
        self.timer: asyncio.TimerHandle | None = None


class AsyncRedisSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpoint saver on core Redis commands (Redis >= 6, Valkey, Cluster).

    Args:
        client: a `redis.asyncio.Redis` or `RedisCluster` with `decode_responses=False`;
            the caller owns it (the saver never closes it).
        ttl_seconds: sliding idle TTL of a thread. Every write refreshes the expiry of
            all the thread's keys (every namespace); `None` keeps threads forever.
        max_checkpoints_per_thread: keep only the newest K checkpoints per
            (thread, namespace) on each `aput`, deleting older ones with their writes
            and the channel values nobody refers to any more. Subgraph namespaces
            whose root step was trimmed away go too (a default subgraph gets a new
            namespace per run). `None` keeps all.
        key_prefix: namespace of every key (`<prefix>:{<thread_id>}:...`).
        refresh_on_read: reads refresh the TTL too (only when `ttl_seconds` is set).
        scan_count: SCAN batch size for the cross-thread operations.
        known_latest_bytes: memory for each thread's latest checkpoint as this saver
            last wrote or read it, so Redis can answer a latest read with
            "unchanged" (see `redis_known`); 0 turns that off.
        serde: LangGraph serializer; defaults to `JsonPlusSerializer`.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        ttl_seconds: float | None = None,
        max_checkpoints_per_thread: int | None = None,
        key_prefix: str = "agent",
        refresh_on_read: bool = True,
        scan_count: int = 500,
        known_latest_bytes: int = DEFAULT_KNOWN_LATEST_BYTES,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        if client.get_encoder().decode_responses:
            raise ValueError("AsyncRedisSaver needs a client with decode_responses=False")
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive or None")
        if max_checkpoints_per_thread is not None and max_checkpoints_per_thread < 1:
            raise ValueError("max_checkpoints_per_thread must be >= 1 or None")
        if not key_prefix or any(ch in key_prefix for ch in "{}"):
            raise ValueError("key_prefix must be non-empty and contain no braces")
        self.client = client
        self.key_prefix = key_prefix
        self.ttl_seconds = ttl_seconds
        self.max_checkpoints_per_thread = max_checkpoints_per_thread
        self.refresh_on_read = refresh_on_read
        self.scan_count = scan_count
        self._ttl_ms = max(1, round(ttl_seconds * 1000)) if ttl_seconds else 0
        self._read_ttl_ms = self._ttl_ms if refresh_on_read else 0
        self._keep = max_checkpoints_per_thread or 0
        self._lane = DirectLane(client) if DirectLane.supports(client) else None
        self.known = KnownLatest(known_latest_bytes)
        self._deferred: dict[str, _Deferred] = {}
        self._sends: set[asyncio.Task[None]] = set()  # timer-started sends, kept alive

    @classmethod
    @asynccontextmanager
    async def from_conn_string(
        cls,
        conn_string: str,
        *,
        ttl_seconds: float | None = None,
        max_checkpoints_per_thread: int | None = None,
        key_prefix: str = "agent",
        refresh_on_read: bool = True,
        cluster: bool = False,
        serde: SerializerProtocol | None = None,
        **client_kwargs: Any,
    ) -> AsyncIterator[AsyncRedisSaver]:
        """Open a client on `conn_string` (a `RedisCluster` when `cluster=True`) for the
        lifetime of the context, and close it after."""
        factory = RedisCluster if cluster else Redis
        client = factory.from_url(conn_string, **{**client_kwargs, "decode_responses": False})
        try:
            yield cls(
                client,
                ttl_seconds=ttl_seconds,
                max_checkpoints_per_thread=max_checkpoints_per_thread,
                key_prefix=key_prefix,
                refresh_on_read=refresh_on_read,
                serde=serde,
            )
        finally:
            await client.aclose()

    async def setup(self) -> None:
        """Nothing to migrate; checks the connection and preloads the Lua scripts."""
        for script in (PUT, PUT_WRITES, READ, PRUNE, DELETE_RUNS, COPY_OUT, COPY_IN):
            await self.client.script_load(script.source)

    # --- plumbing -------------------------------------------------------------------------

    def _keys(self, thread_id: str) -> list[str]:
        return thread_keys(self.key_prefix, str(thread_id))

    async def _eval(self, script: Script, keys: list[str], *args: Any) -> Any:
        try:
            return await self._execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._execute("EVAL", script.source, len(keys), *keys, *args)

    def deferred(self, thread_id: str) -> AbstractAsyncContextManager[None]:
        """Queue `thread_id`'s writes until the block ends, then send them in one
        pipeline; a write that failed raises there (`deferred_writes.py`)."""
        tid = str(thread_id)
        queue = self._deferred.setdefault(tid, _Deferred())

        def begin() -> None:
            queue.depth += 1

        async def end() -> None:
            queue.depth -= 1
            if queue.depth <= 0 and self._deferred.get(tid) is queue:
                del self._deferred[tid]
                if queue.timer is not None:
                    queue.timer.cancel()
            await self._send(tid, queue)
            if queue.failure is not None:
                failure, queue.failure = queue.failure, None
                raise failure

        return deferral(tid, begin, end)

    async def _write(
        self, thread_id: str, script: Script, keys: list[str], args: list[Any]
    ) -> None:
        queue = self._deferred.get(str(thread_id))
        if queue is None:
            await self._eval(script, keys, *args)
            return
        queue.commands.append((script, keys, args))
        if queue.timer is None:
            queue.timer = asyncio.get_running_loop().call_later(
                group_commit.DEFER_SECONDS, self._expire, str(thread_id), queue
            )

    def _expire(self, thread_id: str, queue: _Deferred) -> None:
        queue.timer = None
        task = asyncio.create_task(self._send(thread_id, queue))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, thread_id: str, queue: _Deferred) -> None:
        """Send what `queue` holds as one pipeline, in order. A failure is kept for
        the block's end (a timer's send has nobody to tell) and the thread's known
        latest checkpoint is forgotten (it may not be what Redis holds)."""
        async with queue.lock:
            commands, queue.commands = queue.commands, []
            if not commands:
                return
            try:
                await self._pipeline(commands)
            except Exception as exc:
                self.known.forget(thread_id)
                queue.failure = queue.failure or exc

    async def _pipeline(self, commands: list[tuple[Script, list[str], list[Any]]]) -> None:
        """One round trip (the thread's keys share a cluster slot). Re-sent whole with
        the scripts loaded if the server lost them: both scripts are idempotent."""
        for attempt in range(2):
            calls = [
                ("EVALSHA", script.sha, len(keys), *keys, *args) for script, keys, args in commands
            ]
            results = await self._lane.execute_many(calls) if self._lane is not None else None
            if results is None:
                pipe = self.client.pipeline(transaction=False)
                for call in calls:
                    pipe.execute_command(*call)
                results = await pipe.execute(raise_on_error=False)
            if attempt == 0 and any(isinstance(r, NoScriptError) for r in results):
                for script in {script for script, _, _ in commands}:
                    await self.client.script_load(script.source)
                continue
            for result in results:
                if isinstance(result, Exception):
                    raise result
            return

    async def _settle(self, thread_id: str | None = None) -> None:
        """Before a read, delete or copy: send the queued writes of `thread_id` (of
        every thread with None), so this saver never answers from behind itself."""
        if thread_id is None:
            for tid, queue in list(self._deferred.items()):
                await self._send(tid, queue)
        elif (queue := self._deferred.get(str(thread_id))) is not None:
            await self._send(str(thread_id), queue)

    async def _execute(self, *command: Any) -> Any:
        if self._lane is not None:
            return await self._lane.execute(command)
        return await self.client.execute_command(*command)

    async def _scan_threads(self, suffix: str) -> AsyncIterator[str]:
        """Thread ids having a `suffix` key, via incremental SCAN (deduplicated)."""
        seen: set[str] = set()
        pattern = thread_pattern(self.key_prefix, suffix)
        async for key in self.client.scan_iter(match=pattern, count=self.scan_count):
            thread_id = thread_id_from_key(self.key_prefix, suffix, key)
            if thread_id not in seen:
                seen.add(thread_id)
                yield thread_id

    def _tuple(self, thread_id: str, ns: str, entry: list[Any]) -> CheckpointTuple:
        checkpoint_id, record, blobs, writes = entry
        header, body = unpack_record(record)
        loads = self.serde.loads_typed
        checkpoint, metadata = loads(body)
        channel_values = {
            channel_of(field): loads(unpack_typed(blob))
            for field, blob in zip(header[RECORD_BLOBS:], blobs, strict=True)
            if blob
        }
        pending: list[PendingWrite] = [
            (task_id, channel, loads(typed))
            for _, task_id, _, channel, typed in sorted(map(unpack_write, writes), key=_write_order)
        ]
        parent_id = header[RECORD_PARENT]
        return CheckpointTuple(
            config={
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": checkpoint_id.decode(),
                }
            },
            checkpoint={**checkpoint, "channel_values": channel_values},
            metadata=metadata,
            parent_config=(
                {
                    "configurable": {
                        "thread_id": thread_id,
                        "checkpoint_ns": ns,
                        "checkpoint_id": parent_id,
                    }
                }
                if parent_id
                else None
            ),
            pending_writes=pending,
        )

    def _matches(self, record: bytes, filter: dict[str, Any]) -> bool:
        _, metadata = self.serde.loads_typed(unpack_record(record)[1])
        return all(metadata.get(key) == value for key, value in filter.items())

    # --- writes ---------------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint, its new channel values and metadata in one round trip."""
        configurable = config["configurable"]
        thread_id = configurable["thread_id"]
        ns = _namespace(configurable)
        stored = checkpoint.copy()
        values = stored.pop("channel_values")  # type: ignore[misc]
        full_metadata = get_checkpoint_metadata(config, metadata)
        run_id = str(full_metadata.get("run_id") or "")
        dumps = self.serde.dumps_typed
        fields = [
            blob_field(ns, channel, version)
            for channel, version in checkpoint["channel_versions"].items()
        ]
        record = pack_record(
            boundary=_is_delta_boundary(full_metadata),
            run_id=run_id,
            parent_id=configurable.get("checkpoint_id"),
            blob_fields=fields,
            body=dumps([stored, full_metadata]),
        )
        args: list[Any] = [
            self._ttl_ms,
            self._keep,
            ns,
            f"{ns}\0{checkpoint['id']}",
            record,
            run_id,
        ]
        new_blobs = {
            blob_field(ns, channel, version): (
                pack_typed(dumps(values[channel])) if channel in values else EMPTY
            )
            for channel, version in new_versions.items()
        }
        for field_value in new_blobs.items():
            args.extend(field_value)
        # Stale from here on, whatever the outcome of the write.
        previous = self.known.forget(thread_id) if not ns else None
        await self._write(thread_id, PUT, self._keys(thread_id), args)
        if not ns and self.known.max_bytes:
            self._remember_put(thread_id, checkpoint["id"], record, fields, new_blobs, previous)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    def _remember_put(
        self,
        thread_id: str,
        checkpoint_id: str,
        record: bytes,
        fields: list[str],
        new_blobs: dict[str, bytes],
        previous: KnownCheckpoint | None,
    ) -> None:
        """Know the checkpoint just written, if every value it refers to is known:
        the new ones were just sent, unchanged ones come from the thread's previous
        latest (unknown after a fork from an older checkpoint or a restart: then the
        next read fills this in)."""
        values: dict[str, bytes | None] = dict(new_blobs)
        missing = [field for field in fields if field not in values]
        if missing:
            if previous is None:
                return
            header, _ = unpack_record(previous.record)
            known = dict(zip(header[RECORD_BLOBS:], previous.blobs, strict=True))
            if any(field not in known for field in missing):
                return
            values.update({field: known[field] for field in missing})
        blobs = tuple(values[field] for field in fields)
        self.known.remember(thread_id, KnownCheckpoint(checkpoint_id, record, blobs))

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's pending writes in one round trip. Special writes (error,
        interrupt, ...) overwrite; regular ones never replace an existing (task, idx)."""
        if not writes:
            return
        configurable = config["configurable"]
        ns = _namespace(configurable)
        prefix = f"{ns}\0{configurable['checkpoint_id']}\0{task_id}\0"
        dumps = self.serde.dumps_typed
        args: list[Any] = [self._ttl_ms, prefix]
        for idx, (channel, value) in enumerate(writes):
            write_idx = WRITES_IDX_MAP.get(channel, idx)
            args.append(write_idx)
            args.append(1 if write_idx < 0 else 0)
            args.append(pack_write(task_path, task_id, write_idx, channel, dumps(value)))
        await self._write(
            configurable["thread_id"], PUT_WRITES, self._keys(configurable["thread_id"]), args
        )

    # --- reads ----------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint named by `config`, or the thread's latest, in one round trip."""
        configurable = config["configurable"]
        thread_id = configurable["thread_id"]
        await self._settle(thread_id)
        ns = _namespace(configurable)
        keys = self._keys(thread_id)
        if checkpoint_id := get_checkpoint_id(config):
            entries = await self._eval(READ, keys, self._read_ttl_ms, "ids", ns, checkpoint_id)
            return self._tuple(thread_id, ns, entries[0]) if entries else None
        known = self.known.get(thread_id) if not ns else None
        if known is None:
            entries = await self._eval(READ, keys, self._read_ttl_ms, "latest", ns)
        else:
            entries = await self._eval(
                READ, keys, self._read_ttl_ms, "latest", ns, known.checkpoint_id, known.digest
            )
        if not entries:
            return None
        entry = entries[0]
        if known is not None and len(entry) == 1:  # Redis: still the one we know
            self.known.unchanged_reads += 1
            return self._tuple(thread_id, ns, [entry[0], known.record, known.blobs, []])
        result = self._tuple(thread_id, ns, entry)
        if not ns and self.known.max_bytes:
            checkpoint_id, record, blobs, writes = entry
            if writes:  # never answered "unchanged" while it has pending writes
                self.known.forget(thread_id)
            else:
                self.known.remember(
                    thread_id, KnownCheckpoint(checkpoint_id.decode(), record, tuple(blobs))
                )
        return result

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first. `config=None` lists every thread (SCAN in batches);
        a config without `checkpoint_ns` lists all namespaces of its thread."""
        if limit is not None and limit <= 0:
            return
        await self._settle(config["configurable"]["thread_id"] if config else None)
        ns = config["configurable"].get("checkpoint_ns") if config else None
        checkpoint_id = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        page = min(limit, PAGE_SIZE) if limit and not filter else PAGE_SIZE
        threads: AsyncIterator[str] = (
            _single(config["configurable"]["thread_id"]) if config else self._scan_threads("idx")
        )
        remaining = limit
        async for thread_id in threads:
            async for tup in self._list_thread(
                thread_id, ns, checkpoint_id, before_id, filter or {}, page
            ):
                yield tup
                if remaining is not None:
                    remaining -= 1
                    if remaining == 0:
                        return

    async def _list_thread(
        self,
        thread_id: str,
        ns: str | None,
        checkpoint_id: str | None,
        before_id: str | None,
        filter: dict[str, Any],
        page: int,
    ) -> AsyncIterator[CheckpointTuple]:
        keys = self._keys(thread_id)
        if ns is not None:
            namespaces = [ns]
        else:
            namespaces = sorted(member.decode() for member in await self.client.smembers(keys[6]))
        if checkpoint_id:
            if before_id and checkpoint_id >= before_id:
                return
            for namespace in namespaces:
                for entry in await self._eval(
                    READ, keys, self._read_ttl_ms, "ids", namespace, checkpoint_id
                ):
                    if self._matches(entry[1], filter):
                        yield self._tuple(thread_id, namespace, entry)
            return
        streams = [
            self._list_namespace(keys, thread_id, namespace, before_id, filter, page)
            for namespace in namespaces
        ]
        try:
            async for tup in _merge_newest_first(streams):
                yield tup
        finally:
            for stream in streams:
                await stream.aclose()

    async def _list_namespace(
        self,
        keys: list[str],
        thread_id: str,
        ns: str,
        before_id: str | None,
        filter: dict[str, Any],
        page: int,
    ) -> AsyncIterator[CheckpointTuple]:
        bound = before_id or ""
        full = "0" if filter else "1"
        while True:
            entries = await self._eval(READ, keys, self._read_ttl_ms, "page", ns, bound, page, full)
            if not entries:
                return
            bound = entries[-1][0].decode()
            if filter:
                wanted = [entry[0] for entry in entries if self._matches(entry[1], filter)]
                if wanted:
                    for entry in await self._eval(
                        READ, keys, self._read_ttl_ms, "ids", ns, *wanted
                    ):
                        yield self._tuple(thread_id, ns, entry)
            else:
                for entry in entries:
                    yield self._tuple(thread_id, ns, entry)
            if len(entries) < page:
                return

    # --- thread maintenance ---------------------------------------------------------------

    async def athread_exists(self, thread_id: str) -> bool:
        """Whether the thread has any checkpoint: one EXISTS on its index, without
        reading or deserializing the checkpoint (the app asks this every turn)."""
        await self._settle(thread_id)
        return bool(await self.client.exists(self._keys(thread_id)[0]))

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint, write and channel value of the thread (one UNLINK)."""
        await self._settle(thread_id)
        self.known.forget(str(thread_id))
        await self.client.unlink(*self._keys(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) created by these runs, in every
        thread. Walks the threads that recorded run ids with SCAN."""
        runs = [str(run_id) for run_id in run_ids]
        if not runs:
            return
        await self._settle()
        async for thread_id in self._scan_threads("runs"):
            await self._eval(DELETE_RUNS, self._keys(thread_id), self._ttl_ms, *runs)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, write and channel value of one thread into another,
        merging with what the target already holds. Two round trips (the two threads
        may live on different cluster nodes)."""
        await self._settle(source_thread_id)
        await self._settle(target_thread_id)
        checkpoints, blobs, writes = await self._eval(
            COPY_OUT, self._keys(source_thread_id), self._read_ttl_ms
        )
        if not checkpoints:
            return
        await self._eval(
            COPY_IN,
            self._keys(target_thread_id),
            self._ttl_ms,
            len(checkpoints) // 2,
            *checkpoints,
            len(blobs) // 2,
            *blobs,
            *writes,
        )

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """`keep_latest`: keep the newest checkpoint per namespace (plus DeltaChannel
        ancestors it needs); `delete`: delete the threads."""
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(f"unknown prune strategy {strategy!r}; use one of {PRUNE_STRATEGIES}")
        for thread_id in thread_ids:
            if strategy == "delete":
                await self.adelete_thread(thread_id)
            else:
                await self._settle(thread_id)
                await self._eval(PRUNE, self._keys(thread_id), self._ttl_ms, 1)

    def get_next_version(self, current: str | None, channel: None) -> str:
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        next_v = current_v + 1
        next_h = random.random()
        return f"{next_v:032}.{next_h:016}"

    # --- sync API: not supported ----------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        raise _async_only("aget_tuple")

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        raise _async_only("alist")

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        raise _async_only("aput")

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        raise _async_only("aput_writes")

    def delete_thread(self, thread_id: str) -> None:
        raise _async_only("adelete_thread")

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        raise _async_only("adelete_for_runs")

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        raise _async_only("acopy_thread")

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        raise _async_only("aprune")


async def _single(value: str) -> AsyncIterator[str]:
    yield value


async def _merge_newest_first(
    streams: list[AsyncIterator[CheckpointTuple]],
) -> AsyncIterator[CheckpointTuple]:
    """Merge per-namespace streams (each newest first) by descending checkpoint id."""
    heads: list[tuple[CheckpointTuple, AsyncIterator[CheckpointTuple]]] = []
    for stream in streams:
        if (first := await anext(stream, None)) is not None:
            heads.append((first, stream))
    while heads:
        best = max(range(len(heads)), key=lambda i: heads[i][0].checkpoint["id"])
        tup, stream = heads[best]
        yield tup
        if (following := await anext(stream, None)) is None:
            heads.pop(best)
        else:
            heads[best] = (following, stream)

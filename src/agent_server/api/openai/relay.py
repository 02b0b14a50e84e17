"""`Relay`: a run's events as chunk batches, read ahead in a task of their own.

Why: an OpenAI client learns of a failure from the HTTP status (the SDKs raise
`InternalServerError` on a 503, `ConflictError` on a 409…) only while no byte of the
stream has gone out. So the route waits for the run's first chunk, for at most the
keep-alive interval, before it answers: a run that fails before saying anything
(every model down) is an HTTP error; one that spoke, or is slow to, streams (and a
later failure becomes an error chunk). The wait must not cancel the read of the run's
events (cancelling an async generator's `anext` closes it), hence the task and a
queue, which may be waited on with a timeout and keeps every item.

Reading a live run's log is waiting for the run, not for Redis: with Redis, each
`XREAD BLOCK` of an idle log lasts up to its block time, and charged to the request's
Redis time (`REDIS_REQUEST_TIMEOUT_SECONDS`, shared with the run's own task, which was
started in the same context) it spent that budget within seconds of a slow model,
failing the stream and the run's checkpoint writes. So readers read `outside_budget`:
each call keeps its own socket timeout, as outside a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from typing import Any

from redis.exceptions import RedisError

from agent_server.api.openai.translate import ChunkStream, error_chunk
from agent_server.errors import AgentServerError, RunFailed
from agent_server.persistence.redis_time import RedisTime, redis_time
from agent_server.runs.events import RunEvent

log = logging.getLogger(__name__)

Batch = list[dict[str, Any]]


def outside_budget() -> AbstractContextManager[RedisTime]:
    """Read a live run's events (and start tasks that do) without drawing on the
    request's Redis time (see the module docstring)."""
    return redis_time(math.inf)


class Relay:
    """Feeds `events` through `chunks` into a queue; `opening` then `rest` read it."""

    def __init__(self, events: AsyncIterator[RunEvent], chunks: ChunkStream) -> None:
        self.chunks = chunks
        self._queue: asyncio.Queue[Batch | None] = asyncio.Queue()
        self._drained = False
        with outside_budget():  # the task copies the context, and with it this budget
            self._task = asyncio.create_task(self._pump(events), name="openai-relay")

    async def _pump(self, events: AsyncIterator[RunEvent]) -> None:
        try:
            async for event in events:
                batch = self.chunks.feed(event.event, event.data)
                if batch:
                    self._queue.put_nowait(batch)
                if self.chunks.ended:
                    break
        except AgentServerError as exc:  # e.g. the store went away mid-run
            self._fail({"message": exc.message, "code": exc.code, "status": exc.status_code})
        except (RedisError, OSError) as exc:
            log.warning("reading a run's events failed: %s", type(exc).__name__)
            self._fail(
                {
                    "message": "the state store is unreachable; retry shortly",
                    "code": "store_unavailable",
                    "status": 503,
                }
            )
        except Exception as exc:
            log.exception("reading a run's events failed")
            self._fail({"message": f"the run's events could not be read ({type(exc).__name__})"})
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]
            self._queue.put_nowait(None)

    def _fail(self, error: dict[str, Any]) -> None:
        if self.chunks.ended:
            return
        self.chunks.ended = True
        self.chunks.error = error
        code = str(error.get("code") or "internal_error")
        status = int(error.get("status") or 500)
        self._queue.put_nowait([error_chunk(str(error["message"]), code, status)])

    async def opening(self, seconds: float) -> list[Batch]:
        """The batches up to the first text chunk or the end, waiting `seconds` at
        most. Raises the run's error (as `RunFailed`, with its status) when the run
        failed before anything was said."""
        batches: list[Batch] = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not (self.chunks.started or self.chunks.ended):
                    batch = await self._queue.get()
                    if batch is None:
                        self._drained = True
                        break
                    batches.append(batch)
        if self.chunks.error is not None and not self.chunks.started:
            await self.aclose()
            raise RunFailed(self.chunks.error)
        return batches

    async def rest(self) -> AsyncIterator[Batch]:
        """Every batch `opening` did not take, as it comes."""
        while not self._drained:
            batch = await self._queue.get()
            if batch is None:
                self._drained = True
                return
            yield batch

    async def aclose(self) -> None:
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

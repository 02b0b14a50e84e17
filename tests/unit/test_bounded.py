"""`runs.bounded.bounded`: the stream limit, the shutdown grace and cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import anyio
import pytest

from agent_server.errors import ShuttingDown, StreamTooLong
from agent_server.runs.bounded import bounded


class Source:
    """An async generator of `items`, sleeping `delays[i]` before item i; records
    how it ended (normally, or with which exception thrown into it)."""

    def __init__(self, items: list[int], delays: list[float] | None = None) -> None:
        self.items = items
        self.delays = delays or [0.0] * len(items)
        self.ended_with: type[BaseException] | None = None
        self.finished = False

    async def __call__(self) -> AsyncIterator[int]:
        try:
            for item, delay in zip(self.items, self.delays, strict=True):
                await asyncio.sleep(delay)
                yield item
            self.finished = True
        except BaseException as exc:
            self.ended_with = type(exc)
            raise


async def collect(stream: AsyncIterator[int]) -> list[int]:
    return [item async for item in stream]


async def test_items_pass_through_until_the_stream_ends() -> None:
    source = Source([1, 2, 3])
    assert await collect(bounded(source(), max_seconds=5)) == [1, 2, 3]
    assert source.finished


async def test_a_step_past_the_limit_is_cancelled_and_reported() -> None:
    source = Source([1, 2], delays=[0.0, 10.0])
    got: list[int] = []
    started = time.monotonic()
    with pytest.raises(StreamTooLong):
        async for item in bounded(source(), max_seconds=0.2):
            got.append(item)
    assert got == [1]
    assert time.monotonic() - started < 1.0
    assert source.ended_with is asyncio.CancelledError


async def test_shutdown_during_a_step_ends_the_stream_after_the_grace() -> None:
    source = Source([1, 2], delays=[0.0, 10.0])
    shutdown = anyio.Event()
    got: list[int] = []

    async def signal() -> None:
        await asyncio.sleep(0.1)
        shutdown.set()

    signaller = asyncio.create_task(signal())
    started = time.monotonic()
    with pytest.raises(ShuttingDown):
        async for item in bounded(source(), max_seconds=30, shutdown=shutdown, shutdown_grace=0.2):
            got.append(item)
    elapsed = time.monotonic() - started
    await signaller
    assert got == [1]
    # Woken by the event, not a poll: shutdown at 0.1 s + 0.2 s grace.
    assert 0.25 < elapsed < 0.6
    assert source.ended_with is asyncio.CancelledError


async def test_a_stream_that_ends_within_the_grace_ends_normally() -> None:
    source = Source([1, 2], delays=[0.0, 0.2])
    shutdown = anyio.Event()
    shutdown.set()
    items = bounded(source(), max_seconds=30, shutdown=shutdown, shutdown_grace=1.0)
    assert await collect(items) == [1, 2]


async def test_limit_reached_while_the_consumer_holds_an_item() -> None:
    """The limit never cancels the consumer at `yield`: it is raised at the next step."""
    source = Source([1, 2])
    got: list[int] = []
    with pytest.raises(StreamTooLong):
        async for item in bounded(source(), max_seconds=0.1):
            got.append(item)
            await asyncio.sleep(0.2)  # would raise CancelledError if the timeout spanned it
    assert got == [1]


async def test_consumer_cancelled_cancels_the_step_in_flight() -> None:
    source = Source([1, 2], delays=[0.0, 10.0])
    got: list[int] = []

    async def consume() -> None:
        async for item in bounded(source(), max_seconds=30, shutdown=anyio.Event()):
            got.append(item)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == [1]
    assert source.ended_with is asyncio.CancelledError


async def test_a_timeout_raised_by_the_stream_itself_is_not_the_limit() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        raise TimeoutError("the stream's own")

    with pytest.raises(TimeoutError, match="the stream's own"):
        await collect(bounded(failing(), max_seconds=30))


async def test_no_task_is_left_behind() -> None:
    before = len(asyncio.all_tasks())
    await collect(bounded(Source([1, 2])(), max_seconds=5, shutdown=anyio.Event()))
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before

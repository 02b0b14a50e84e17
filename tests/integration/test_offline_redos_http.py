"""Issue 16 item 1 over real HTTP: a hostile message no longer freezes the server.

Before the fix, ``{"message": "weather in a , , , , , , , , , , , , ,b"}`` took 20.7 s in
the offline model's regexes, on the event loop, and ``/healthz`` waited 20.3 s meanwhile.
The bounds here are relative to the same server's answers to ordinary requests, measured
in the same run, so a slow machine does not fail them and a regression (thousands of times
slower) does.
"""

from __future__ import annotations

import asyncio
import time

import httpx

HOSTILE = [
    "weather in a , , , , , , , , , , , , ,b",
    "Calculate 1" + " " * 22 + "x",
    "weather in a " + ", " * 15_000 + "b",
    "search for " + "? " * 15_000 + "x",
]


async def _timed(client: httpx.AsyncClient, method: str, url: str, **kw: object) -> float:
    start = time.perf_counter()
    response = await client.request(method, url, **kw)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    return time.perf_counter() - start


async def _burst(client: httpx.AsyncClient, texts: list[str]) -> tuple[list[float], list[float]]:
    """Send ``texts`` at once while polling /healthz; the turns' and the probes' times."""
    healthz: list[float] = []
    stop = asyncio.Event()

    async def poll_healthz() -> None:
        while not stop.is_set():
            healthz.append(await _timed(client, "GET", "/healthz"))

    poller = asyncio.create_task(poll_healthz())
    try:
        turns = await asyncio.gather(
            *(_timed(client, "POST", "/api/chat/message", json={"message": t}) for t in texts)
        )
    finally:
        stop.set()
        await poller
    assert healthz, "healthz was never polled while the messages ran"
    return list(turns), healthz


async def test_hostile_messages_do_not_block_healthz(client: httpx.AsyncClient) -> None:
    # The baseline: ordinary messages of the same lengths, sent the same way. Storing and
    # checkpointing 30,000 characters costs the same whatever they say.
    ordinary = [("Calculate 10 * 20 " * (len(t) // 18 + 1))[: len(t)] for t in HOSTILE]
    await _burst(client, ordinary)  # warm up
    ordinary_turns, _ = await _burst(client, ordinary)
    hostile_turns, hostile_healthz = await _burst(client, HOSTILE)

    # Before the fix the first hostile message alone took 20 s, and /healthz waited as
    # long: over 100x these bounds.
    slowest = max(ordinary_turns)
    assert max(hostile_turns) <= 5 * slowest, (hostile_turns, ordinary_turns)
    assert max(hostile_healthz) <= 3 * slowest, (max(hostile_healthz), ordinary_turns)


async def test_hostile_message_gets_a_normal_answer(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/chat/message", json={"message": HOSTILE[0]})
    assert response.status_code == 200, response.text
    assert response.json()["tools_used"] == ["weather"]
    response = await client.post("/api/chat/message", json={"message": HOSTILE[2]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tools_used"] == []
    assert "1000 characters" in body["response"]

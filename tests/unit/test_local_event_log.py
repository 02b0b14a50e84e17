"""`LocalEventLog` keeps the newest `finished` closed logs for replay and every open
one, and drops the rest in the order they closed (pure in-memory: no I/O)."""

from __future__ import annotations

from agent_server.runs.events import LocalEventLog


async def alive() -> bool:
    return True


async def exists(log: LocalEventLog, run_id: str) -> bool:
    return await log.exists("t", run_id)


async def test_only_the_newest_closed_logs_stay_and_open_ones_are_never_dropped() -> None:
    log = LocalEventLog(finished=2)
    await log.open("t", "running")
    for run_id in ("a", "b", "c", "d"):
        await log.open("t", run_id)
        await log.append("t", run_id, "values", {"run": run_id})
        await log.close("t", run_id, {"status": "success"})
    assert [r for r in ("a", "b", "c", "d", "running") if await exists(log, r)] == [
        "c",
        "d",
        "running",
    ]
    replay = [e.event async for e in log.read("t", "d", after=None, alive=alive)]
    assert replay == ["values", "end"]


async def test_a_deleted_log_frees_its_place_among_the_closed() -> None:
    log = LocalEventLog(finished=2)
    for run_id in ("a", "b"):
        await log.open("t", run_id)
        await log.close("t", run_id, {})
    await log.delete("t", "a")
    await log.open("t", "c")
    await log.close("t", "c", {})
    assert [r for r in ("a", "b", "c") if await exists(log, r)] == ["b", "c"]

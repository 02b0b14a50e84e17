"""`/api/chat/history` after forks: Studio's / Agent Chat UI's "edit a message" runs from
an earlier checkpoint and starts a new branch; the transcript records which branch each
turn belongs to (`turns.parent_turn_id`) and history shows the branch the thread is on,
not every turn ever stored. On SQLite and PostgreSQL, through the real SDK and REST."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from sqlalchemy import text

from agent_server.api.app import create_app
from agent_server.persistence.db import create_engine
from tests.agent_protocol.conftest import (
    FAST_MODEL,
    FAST_REPLY,
    GRAPH_ID,
    ask,
    ours_only,
    ours_settings,
)
from tests.conftest import ALICE, auth
from tests.support.fake_upstream import FakeUpstream
from tests.support.fake_upstream import text as reply
from tests.support.postgres import temporary_database
from tests.support.servers import serve_in_thread

pytestmark = ours_only


class Server:
    """Our app on a database of the test's choosing, with an SDK and a REST client."""

    def __init__(self, url: str, database_url: str) -> None:
        self.url = url
        self.database_url = database_url

    def sdk(self) -> LangGraphClient:
        return get_client(url=self.url, api_key=ALICE, timeout=30.0)

    def rest(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=auth(ALICE), timeout=30)

    async def history(self, thread_id: str, **params: Any) -> list[str]:
        async with self.rest() as rest:
            r = await rest.get(f"/api/chat/history/{thread_id}", params=params)
        assert r.status_code == 200, r.text
        return [t["user_message"] for t in r.json()["turns"]]

    async def parents(self, thread_id: str) -> list[tuple[str, str | None]]:
        """(user message, its parent's user message or the raw column) per stored row."""
        engine = create_engine(self.database_url)
        try:
            async with engine.connect() as conn:
                rows = (
                    await conn.execute(
                        text(
                            "SELECT turn_id, parent_turn_id, user_message FROM turns"
                            " WHERE session_id = :sid ORDER BY id"
                        ),
                        {"sid": thread_id},
                    )
                ).all()
        finally:
            await engine.dispose()
        said = {row.turn_id: row.user_message for row in rows}
        return [
            (row.user_message, said.get(row.parent_turn_id, row.parent_turn_id)) for row in rows
        ]


@pytest.fixture(params=["sqlite", "postgres"])
async def server(
    request: pytest.FixtureRequest, upstream: FakeUpstream, tmp_path: Path
) -> AsyncIterator[Server]:
    if request.param == "sqlite":
        settings = ours_settings(tmp_path, upstream)
        with serve_in_thread(create_app(settings)) as url:
            yield Server(url, settings.database_url)
        return
    async with temporary_database() as database_url:
        settings = ours_settings(tmp_path, upstream, database_url=database_url)
        with serve_in_thread(create_app(settings)) as url:
            yield Server(url, database_url)


def human_contents(state: dict[str, Any]) -> list[str]:
    return [m["content"] for m in state["values"].get("messages", []) if m["type"] == "human"]


def settled(history: list[dict[str, Any]], humans: list[str]) -> dict[str, Any]:
    """The checkpoint of a finished turn (nothing next) whose human messages are `humans`."""
    return next(s for s in history if s["next"] == [] and human_contents(s) == humans)


def without_thread_id(checkpoint: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in checkpoint.items() if k != "thread_id"}  # as useStream sends it


async def test_history_follows_the_branch_after_an_edit_and_back(server: Server) -> None:
    async with server.sdk() as sdk:
        tid = (await sdk.threads.create())["thread_id"]
        await sdk.runs.wait(tid, GRAPH_ID, input=ask("A"))
        await sdk.runs.wait(tid, GRAPH_ID, input=ask("B"))
        assert await server.history(tid) == ["A", "B"]

        # "Edit B": a run from the checkpoint after A.
        after_a = settled(await sdk.threads.get_history(tid, limit=100), ["A"])
        await sdk.runs.wait(
            tid, GRAPH_ID, input=ask("C"), checkpoint=without_thread_id(after_a["checkpoint"])
        )
        assert await server.history(tid) == ["A", "C"]
        assert await server.history(tid, limit=1, offset=1) == ["C"]
        assert await server.history(tid, limit=1) == ["A"]

        # Back to the old branch: a run from the checkpoint after B.
        after_b = settled(await sdk.threads.get_history(tid, limit=100), ["A", "B"])
        await sdk.runs.wait(
            tid, GRAPH_ID, input=ask("D"), checkpoint=without_thread_id(after_b["checkpoint"])
        )
        assert await server.history(tid) == ["A", "B", "D"]
        # The model saw that branch only, and the next plain run continues it.
        await sdk.runs.wait(tid, GRAPH_ID, input=ask("E"))
        assert await server.history(tid) == ["A", "B", "D", "E"]
        state = await sdk.threads.get_state(tid)
        assert human_contents(state) == ["A", "B", "D", "E"]

    assert await server.parents(tid) == [
        ("A", ""),
        ("B", "A"),
        ("C", "A"),
        ("D", "B"),
        ("E", "D"),
    ]


async def test_a_regenerated_answer_is_stored_as_a_turn_of_its_own(
    server: Server, upstream: FakeUpstream
) -> None:
    """ "Regenerate" (Agent Chat UI) / "re-run from here" (Studio): a run with no input
    from the checkpoint before the model answered B. B's first answer is stored under
    B's message id; the new answer must be stored too, and history must show it."""
    async with server.sdk() as sdk:
        tid = (await sdk.threads.create())["thread_id"]
        await sdk.runs.wait(tid, GRAPH_ID, input=ask("A"))
        await sdk.runs.wait(tid, GRAPH_ID, input=ask("B"))
        history = await sdk.threads.get_history(tid, limit=100)
        before_answer = next(
            s for s in history if s["next"] == ["model"] and human_contents(s) == ["A", "B"]
        )
        upstream.script(FAST_MODEL, reply("a second answer"))
        values = await sdk.runs.wait(
            tid, GRAPH_ID, input=None, checkpoint=without_thread_id(before_answer["checkpoint"])
        )
        assert values["messages"][-1]["content"] == "a second answer"
        # Next, a plain run continues from the regenerated answer.
        await sdk.runs.wait(tid, GRAPH_ID, input=ask("C"))
    async with server.rest() as rest:
        turns = (await rest.get(f"/api/chat/history/{tid}")).json()["turns"]
    assert [(t["user_message"], t["response"]) for t in turns] == [
        ("A", FAST_REPLY),
        ("B", "a second answer"),
        ("C", FAST_REPLY),
    ]
    assert await server.parents(tid) == [("A", ""), ("B", "A"), ("B", "A"), ("C", "B")]


async def test_editing_the_first_message_starts_a_root(server: Server) -> None:
    async with server.sdk() as sdk:
        tid = (await sdk.threads.create())["thread_id"]
        await sdk.runs.wait(tid, GRAPH_ID, input=ask("A"))
        await sdk.runs.wait(tid, GRAPH_ID, input=ask("B"))
        history = await sdk.threads.get_history(tid, limit=100)
        first = [s for s in history if "A" in human_contents(s)][-1]  # newest first
        await sdk.runs.wait(
            tid,
            GRAPH_ID,
            input=ask("A2"),
            checkpoint=without_thread_id(first["parent_checkpoint"]),
        )
        assert await server.history(tid) == ["A2"]
    assert await server.parents(tid) == [("A", ""), ("B", "A"), ("A2", "")]


async def test_a_linear_session_is_unchanged(server: Server) -> None:
    async with server.rest() as rest:
        first = await rest.post("/api/chat/message", json={"message": "one"})
        sid = first.json()["session_id"]
        for message in ("two", "three"):
            r = await rest.post("/api/chat/message", json={"message": message, "session_id": sid})
            assert r.status_code == 200, r.text
    assert await server.history(sid) == ["one", "two", "three"]
    assert await server.history(sid, limit=2, offset=1) == ["two", "three"]
    assert await server.parents(sid) == [("one", ""), ("two", "one"), ("three", "two")]


def lose_hot_state(checkpoint_db: Path, thread_id: str) -> None:
    """The thread's checkpoints disappear (expired, store wiped); with a server restart
    not even its in-process copy is left."""
    with sqlite3.connect(checkpoint_db) as conn:
        conn.execute("DELETE FROM checkpoints WHERE thread_id = ?", (thread_id,))
        conn.execute("DELETE FROM writes WHERE thread_id = ?", (thread_id,))


async def test_lost_hot_state_continues_the_newest_branch(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """After a fork the hot state expires: the next message's context is rebuilt from
    the newest turn's branch only (not the abandoned turn), the new turn's parent is
    that newest turn (known from the restored messages), and history shows that branch."""
    settings = ours_settings(tmp_path, upstream)
    with serve_in_thread(create_app(settings)) as url:
        server = Server(url, settings.database_url)
        async with server.sdk() as sdk:
            tid = (await sdk.threads.create())["thread_id"]
            await sdk.runs.wait(tid, GRAPH_ID, input=ask("A"))
            await sdk.runs.wait(tid, GRAPH_ID, input=ask("B"))
            after_a = settled(await sdk.threads.get_history(tid, limit=100), ["A"])
            await sdk.runs.wait(
                tid, GRAPH_ID, input=ask("C"), checkpoint=without_thread_id(after_a["checkpoint"])
            )
    lose_hot_state(settings.checkpoint_db_path, tid)
    with serve_in_thread(create_app(settings)) as url:
        server = Server(url, settings.database_url)
        assert await server.history(tid) == ["A", "C"]  # no checkpoint: the newest turn's
        async with server.rest() as rest:
            r = await rest.post("/api/chat/message", json={"message": "D", "session_id": tid})
            assert r.status_code == 200, r.text
        sent = upstream.requests[-1].body["messages"]
        assert [m["content"] for m in sent if m["role"] == "user"] == ["A", "C", "D"]
        assert await server.history(tid) == ["A", "C", "D"]
    assert (await server.parents(tid))[-1] == ("D", "C")


async def test_the_rest_path_never_asks_sql_for_a_parent(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    """REST throughput is benchmarked: a new session's first turn, a session made by
    `POST /api/chat/session`, and every later turn take their parent from the state."""
    settings = ours_settings(tmp_path, upstream)
    app = create_app(settings)
    with serve_in_thread(app) as url:
        transcript = app.state.resources.deps.transcript
        calls: list[str] = []
        original = transcript.newest_turn_id

        async def counted(session_id: str, **kwargs: Any) -> Any:
            calls.append(session_id)
            return await original(session_id, **kwargs)

        transcript.newest_turn_id = counted
        server = Server(url, settings.database_url)
        async with server.rest() as rest:
            first = await rest.post("/api/chat/message", json={"message": "one"})
            sid = first.json()["session_id"]
            await rest.post("/api/chat/message", json={"message": "two", "session_id": sid})
            made = (await rest.post("/api/chat/session")).json()["session_id"]
            await rest.post("/api/chat/message", json={"message": "uno", "session_id": made})
            await rest.post("/api/chat/message", json={"message": "dos", "session_id": made})
        assert calls == []
    assert await server.parents(sid) == [("one", ""), ("two", "one")]
    assert await server.parents(made) == [("uno", ""), ("dos", "uno")]

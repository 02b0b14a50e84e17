"""Hot state lost → the next turn's context is rebuilt from the SQL transcript."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent_server.api.app import create_app
from agent_server.config import Settings
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, fail, fake_upstream, text
from tests.support.past_lookups import PastLookups
from tests.support.servers import serve_in_thread


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[FakeUpstream, Settings]]:
    """The fake upstream, and settings whose one model, m1, it serves."""
    with fake_upstream() as fake:
        yield (
            fake,
            make_settings(
                tmp_path,
                openrouter_api_key="sk-test",
                openrouter_base_url=fake.base_url,
                agent_models=["m1"],
            ),
        )


async def test_context_rebuilt_from_sql_when_checkpoints_are_gone(
    upstream: tuple[FakeUpstream, Settings],
) -> None:
    fake, settings = upstream
    fake.always("m1", text("Nice to meet you, Ada."))
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            first = await client.post("/api/chat/message", json={"message": "I am Ada."})
            sid = first.json()["session_id"]
    # The hot state disappears (store wiped...) and the server restarts, so not
    # even its in-process copy of the latest checkpoint is left.
    with sqlite3.connect(settings.checkpoint_db_path) as conn:
        conn.execute("DELETE FROM checkpoints WHERE thread_id = ?", (sid,))
        conn.execute("DELETE FROM writes WHERE thread_id = ?", (sid,))
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            second = await client.post(
                "/api/chat/message", json={"message": "Who am I?", "session_id": sid}
            )
            assert second.status_code == 200
            history = (await client.get(f"/api/chat/history/{sid}")).json()["turns"]
    sent = fake.requests[-1].body["messages"]
    roles_and_text = [(m["role"], m["content"]) for m in sent]
    assert roles_and_text[1:] == [
        ("user", "I am Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "Who am I?"),
    ]
    assert [t["user_message"] for t in history] == ["I am Ada.", "Who am I?"]


async def test_live_hot_state_is_not_duplicated(upstream: tuple[FakeUpstream, Settings]) -> None:
    fake, settings = upstream
    fake.always("m1", text("ok"))
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            sid = (await client.post("/api/chat/message", json={"message": "one"})).json()[
                "session_id"
            ]
            await client.post("/api/chat/message", json={"message": "two", "session_id": sid})
    sent = [(m["role"], m["content"]) for m in fake.requests[-1].body["messages"]][1:]
    assert sent == [("user", "one"), ("assistant", "ok"), ("user", "two")]


async def test_a_session_made_by_post_needs_no_lookup_for_its_first_message(
    upstream: tuple[FakeUpstream, Settings],
) -> None:
    fake, settings = upstream
    fake.always("m1", text("ok"))
    app = create_app(settings)
    with serve_in_thread(app) as url:
        lookups = PastLookups(app)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            untitled = (await client.post("/api/chat/session")).json()["session_id"]
            titled = (await client.post("/api/chat/session", json={"title": "Plans"})).json()[
                "session_id"
            ]
            first = await client.post(
                "/api/chat/message", json={"message": "one", "session_id": untitled}
            )
            assert first.status_code == 200
            assert lookups.calls == 0  # untitled = no turn yet: nothing to look up
            await client.post("/api/chat/message", json={"message": "two", "session_id": untitled})
            assert lookups.calls == 0  # its hot state holds turn one
            # A title given at creation says nothing about turns: looked up, as before.
            await client.post("/api/chat/message", json={"message": "hi", "session_id": titled})
            assert lookups.calls == 1
            # The first turn gave the untitled session its title, and the service's
            # in-process copy of the session knows it too (else a later loss of the
            # hot state would go unnoticed).
            listed = {
                s["session_id"]: s["title"]
                for s in (await client.get("/api/chat/sessions")).json()["sessions"]
            }
            assert listed[untitled] == "one"
            remembered = app.state.service._known.get(untitled)
            assert remembered is not None and remembered.title == "one"
    sent = [(m["role"], m["content"]) for m in fake.requests[1].body["messages"]][1:]
    assert sent == [("user", "one"), ("assistant", "ok"), ("user", "two")]


async def test_a_failed_first_turn_leaves_no_stale_no_past(
    upstream: tuple[FakeUpstream, Settings],
) -> None:
    """The turn fails before anything is recorded; the session is still untitled and
    the next message again needs no lookup, but reads the row from SQL afresh."""
    fake, settings = upstream
    fake.always("m1", fail("server_error"))
    app = create_app(settings)
    with serve_in_thread(app) as url:
        lookups = PastLookups(app)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            sid = (await client.post("/api/chat/session")).json()["session_id"]
            failed = await client.post(
                "/api/chat/message", json={"message": "one", "session_id": sid}
            )
            assert failed.status_code == 503
            assert app.state.service._known.get(sid) is None  # forgotten: in doubt
            fake.always("m1", text("ok"))
            second = await client.post(
                "/api/chat/message", json={"message": "two", "session_id": sid}
            )
            assert second.status_code == 200
            assert lookups.calls == 0
            history = (await client.get(f"/api/chat/history/{sid}")).json()["turns"]
    assert [t["user_message"] for t in history] == ["two"]

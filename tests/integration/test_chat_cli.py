"""`agent-server chat` through a real pseudo-terminal against live servers.

The console script runs as a subprocess on a pty (pexpect), as a person would run
it; the servers are real (offline model, the fallback chain against the fake
upstream, a keyed server). Colour is off (`NO_COLOR`, `TERM=dumb`) so the text can
be matched; the layout is rich's.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from agent_server.api.app import create_app
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, fail, fake_upstream, text
from tests.support.servers import serve_in_thread
from tests.support.weather_stub import weather_stub

AGENT_SERVER = Path(sys.executable).with_name("agent-server")
PROMPT = "you > "
KEY = "chat-key-0123456789abcdef"


def spawn(*args: str) -> pexpect.spawn:
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "120"}
    child = pexpect.spawn(str(AGENT_SERVER), ["chat", *args], env=env, encoding="utf-8", timeout=20)
    child.expect_exact(PROMPT)
    return child


def ask(child: pexpect.spawn, line: str) -> str:
    """Send one line; the output up to the next prompt."""
    child.sendline(line)
    child.expect_exact(PROMPT)
    return str(child.before).replace("\r", "")


def quit_chat(child: pexpect.spawn) -> None:
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.fixture(scope="module")
def offline_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = make_settings(tmp_path_factory.mktemp("chat-offline"))
    with serve_in_thread(create_app(settings)) as url:
        yield url


def session_rows(listing: str) -> dict[str, int]:
    """`/sessions` output → {session id: turn count}."""
    rows = re.findall(r"([0-9a-f-]{36})\s+.*?\s+(\d+)\s+\d{4}-\d\d-\d\d", listing)
    return {sid: int(turns) for sid, turns in rows}


def test_turns_tools_sessions_new_and_quit(offline_url: str) -> None:
    child = spawn("--url", offline_url)
    out = ask(child, "Calculate 10 * 20")
    assert "⚙ calculator(expression='10 * 20')" in out
    assert re.search(r"→ 200\s+[\d.]+ ms", out)
    assert "10 * 20 = 200" in out
    assert re.search(r"offline · \d+ tokens · \d+ ms", out)

    out = ask(child, "What is (3 + 4) * 2?")  # the same session
    assert "= 14" in out
    first = session_rows(ask(child, "/sessions"))
    assert list(first.values()) == [2]
    (session_id,) = first

    assert "new conversation" in ask(child, "/new")
    assert "= 42" in ask(child, "Calculate 6 * 7")
    listing = ask(child, "/sessions")
    rows = session_rows(listing)
    assert len(rows) == 2 and rows[session_id] == 2
    (other,) = set(rows) - {session_id}
    assert rows[other] == 1
    assert re.search(rf"\*\s+{other}", listing)  # the current one is marked

    out = ask(child, f"/open {session_id}")
    assert f"session {session_id}: 2 turn(s)" in out
    assert "(3 + 4) * 2 = 14" in out
    ask(child, "Calculate 1 + 1")
    assert session_rows(ask(child, "/sessions"))[session_id] == 3
    assert "unknown command /nope" in ask(child, "/nope")
    quit_chat(child)


def test_session_flag_continues_a_session(offline_url: str) -> None:
    child = spawn("--url", offline_url)
    ask(child, "Calculate 5 * 5")
    (session_id,) = [s for s, n in session_rows(ask(child, "/sessions")).items() if n == 1][-1:]
    quit_chat(child)
    child = spawn("--url", offline_url, "--session", session_id)
    ask(child, "Calculate 5 * 6")
    assert session_rows(ask(child, "/sessions"))[session_id] == 2
    child.sendeof()  # Ctrl-D ends it too
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


def test_fallback_and_reset_are_shown(tmp_path: Path, upstream: FakeUpstream) -> None:
    settings = make_settings(
        tmp_path,
        openrouter_api_key="sk-test-chat",
        openrouter_base_url=upstream.base_url,
        agent_models=["m1", "m2", "m3"],
        model_timeout_seconds=2.0,
    )
    with serve_in_thread(create_app(settings)) as url:
        upstream.script("m1", fail("server_error", status=500))
        upstream.script("m2", text("answered by m2"))
        child = spawn("--url", url)
        out = ask(child, "hello")
        assert "↪ m1 failed (server_error): trying m2" in out
        assert "answered by m2" in out
        assert re.search(r"m2 · 1 fallback\(s\)", out)

        upstream.script("m1", fail("drop", text="one two three four", drop_after_tokens=2))
        upstream.script("m2", text("a complete answer"))
        out = ask(child, "again")
        assert "↻ m1 failed mid-answer (connection)" in out
        assert out.index("one two") < out.index("↻") < out.index("a complete answer")

        # Ctrl-C mid-answer stops the turn and returns to the prompt; nothing is saved.
        upstream.script("m1", text(" ".join(f"w{n}" for n in range(100)), tokens_per_second=10))
        child.sendline("talk slowly")
        child.expect_exact("w2")
        child.sendintr()
        child.expect_exact("stopped; nothing of this turn was saved")
        child.expect_exact(PROMPT)
        assert "w99" not in str(child.before)
        assert list(session_rows(ask(child, "/sessions")).values()) == [2]  # hello, again
        quit_chat(child)


def test_401_asks_for_a_key_and_retries(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, agent_api_keys=[KEY])
    with serve_in_thread(create_app(settings)) as url:
        child = spawn("--url", url)
        child.sendline("Calculate 10 * 20")
        child.expect_exact("API key (kept for this run only): ")
        assert "401 unauthorized" in str(child.before)
        child.sendline(KEY)
        child.expect_exact(PROMPT)
        assert "10 * 20 = 200" in str(child.before)
        quit_chat(child)
        child = spawn("--url", url, "--api-key", KEY)
        assert len(session_rows(ask(child, "/sessions"))) == 1
        quit_chat(child)


def test_a_paused_turn_asks_approve_edit_or_deny(tmp_path: Path) -> None:
    with weather_stub() as stub:
        settings = make_settings(
            tmp_path,
            weather_geocoding_url=stub.geocoding_url,
            weather_forecast_url=stub.forecast_url,
            approval_tools=["weather"],
        )
        with serve_in_thread(create_app(settings)) as url:
            child = spawn("--url", url)
            child.sendline("weather in Seoul")
            child.expect_exact("waits for your approval")
            child.expect_exact("[y]es / [e]dit / [n]o: ")
            assert stub.calls == []  # nothing runs before the person answers
            out = ask(child, "y")
            assert "12.3" in out
            assert any(c.startswith("geocode:") for c in stub.calls)

            child.sendline("weather in Busan")
            child.expect_exact("[y]es / [e]dit / [n]o: ")
            child.sendline("e")
            child.expect_exact("new arguments as JSON: ")
            child.sendline("not json")
            child.expect_exact("not a JSON object")
            child.expect_exact("[y]es / [e]dit / [n]o: ")
            child.sendline("e")
            child.expect_exact("new arguments as JSON: ")
            ask(child, '{"location": "Paris"}')
            assert "geocode:Paris" in stub.calls

            calls = len(stub.calls)
            child.sendline("weather in Tokyo")
            child.expect_exact("[y]es / [e]dit / [n]o: ")
            child.sendline("n")
            child.expect_exact("reason (optional): ")
            ask(child, "not now")
            assert len(stub.calls) == calls  # denied: the tool never ran
            quit_chat(child)

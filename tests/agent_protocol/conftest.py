"""Fixtures of the Agent Protocol acceptance suite: one target server per session.

The suite is black-box: it drives a server only through the real clients
(`langgraph_sdk`, `RemoteGraph`, `@langchain/langgraph-sdk`) plus raw HTTP where a
browser would send something the SDKs do not (Studio's text/plain bodies, CORS
preflights, a dropped SSE connection). `AP_TARGET` picks the server:

- `ours` (default): `create_app(settings)` over real HTTP, keys ALICE and BOB, CORS for
  Studio's origin, the AP at the root beside `/api`;
- `reference`: `langgraph dev` serving this repo's `langgraph.json`, no auth. Running
  the suite there checks the suite: whatever the reference does right must pass.

Both talk to the same fake OpenAI-compatible upstream, so runs are deterministic and a
run can be made to last (model `slow`) for concurrency, cancel, join and reconnect.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.conftest import ALICE, BOB, make_settings
from tests.support.fake_upstream import FakeUpstream, fake_upstream, text
from tests.support.servers import serve_in_thread

TARGET = os.environ.get("AP_TARGET", "ours").strip().lower()
if TARGET not in ("ours", "reference"):
    raise RuntimeError(f"AP_TARGET must be 'ours' or 'reference', not {TARGET!r}")
IS_REFERENCE = TARGET == "reference"

STUDIO_ORIGIN = "https://smith.langchain.com"
GRAPH_ID = "agent"
AGENT_ID = "fe096781-5601-53d2-b2f6-0d3403f7e9ca"
"""The reference's assistant id for graph `agent`: uuid5(NAMESPACE_X500-like, "agent")."""

FAST_MODEL = "fast"
SLOW_MODEL = "slow"
TOOL_MODEL = "tools"
MODELS = (FAST_MODEL, SLOW_MODEL, TOOL_MODEL)
FAST_REPLY = "Hello from the fake upstream."
SLOW_WORDS = 30
SLOW_REPLY = " ".join(f"w{i}" for i in range(SLOW_WORDS))
SLOW_TOKENS_PER_SECOND = 30.0
SLOW_FIRST_TOKEN_SECONDS = 1.0
"""A slow model call lasts >= 1 s whether the server asks for a stream (30 words at 30/s
after the first-token latency: ~2 s) or not (the fake applies only the latency then): a
run stays `running` long enough to be joined, cancelled or raced, even on a busy box."""

ours_only = pytest.mark.skipif(IS_REFERENCE, reason="checks our server only (auth, SQL, Redis)")


def reference_wrong(reason: str, *, kind: str = "reference bug") -> pytest.MarkDecorator:
    """The reference gets this wrong (AGENT-PROTOCOL.md, or seen on its wire): expected
    to fail there only, strictly (an unexpected pass there fails the suite too)."""
    return pytest.mark.xfail(IS_REFERENCE, reason=f"{kind}: {reason}", strict=True)


@dataclass
class Target:
    """The server under test, as the clients see it."""

    name: str
    url: str
    api_key: str | None
    """The key the SDKs send (`x-api-key`); None on the reference (no auth)."""
    other_key: str | None
    """A second tenant's key (ours only)."""
    upstream: FakeUpstream

    def client(self, api_key: str | None = None, **kw: Any) -> LangGraphClient:
        key = api_key if api_key is not None else self.api_key
        return get_client(url=self.url, api_key=key, timeout=kw.pop("timeout", 30.0), **kw)

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key} if self.api_key else {}


def configure_upstream(upstream: FakeUpstream) -> None:
    """Model `fast` answers at once, `slow` takes 1-2 s, `tools` answers FAST_REPLY
    unless a test scripts a tool call first."""
    upstream.reset()
    upstream.always(FAST_MODEL, text(FAST_REPLY))
    upstream.always(
        SLOW_MODEL,
        text(
            SLOW_REPLY,
            first_token_latency=SLOW_FIRST_TOKEN_SECONDS,
            tokens_per_second=SLOW_TOKENS_PER_SECOND,
        ),
    )
    upstream.always(TOOL_MODEL, text(FAST_REPLY))


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as fake:
        configure_upstream(fake)
        yield fake


@pytest.fixture(scope="session")
def target(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp(f"ap-{TARGET}")
    if IS_REFERENCE:
        from tests.support.langgraph_dev import langgraph_dev, server_env

        env = server_env(
            tmp,
            OPENROUTER_API_KEY="fake-upstream-key",
            OPENROUTER_BASE_URL=upstream.base_url,
            AGENT_MODELS=",".join(MODELS),
        )
        with langgraph_dev(tmp, env=env) as url:
            yield Target("reference", url, None, None, upstream)
        return
    from agent_server.api.app import create_app

    settings = ours_settings(tmp, upstream)
    with serve_in_thread(create_app(settings)) as url:
        yield Target("ours", url, ALICE, BOB, upstream)


def ours_settings(tmp: Path, upstream: FakeUpstream, **overrides: Any) -> Any:
    """Our server's settings for the suite: two tenants, Studio's CORS origin, the fake
    upstream's three models, a rate limit high enough not to interfere."""
    values: dict[str, Any] = {
        "agent_api_keys": [ALICE, BOB],
        "cors_origins": [STUDIO_ORIGIN],
        "openrouter_api_key": "fake-upstream-key",
        "openrouter_base_url": upstream.base_url,
        "agent_models": list(MODELS),
        "rate_limit_per_minute": 100_000,
        "sse_ping_seconds": 5.0,
    }
    values.update(overrides)
    return make_settings(tmp, **values)


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: FakeUpstream) -> Iterator[None]:
    """Every test starts from the default behaviours (a test may script more)."""
    configure_upstream(upstream)
    yield


@pytest.fixture
async def client(target: Target) -> AsyncIterator[LangGraphClient]:
    async with target.client() as sdk:
        yield sdk


@pytest.fixture
async def http(target: Target) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP, for what a browser sends and the SDKs do not."""
    async with httpx.AsyncClient(base_url=target.url, headers=target.headers, timeout=30) as raw:
        yield raw


# --- helpers ---------------------------------------------------------------------


def ask(content: str = "hi", *, message_id: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "human", "content": content}
    if message_id:
        message["id"] = message_id
    return {"messages": [message]}


SLOW = {"model": SLOW_MODEL}
FAST = {"model": FAST_MODEL}


def message_types(values: dict[str, Any]) -> list[str]:
    return [m["type"] for m in values.get("messages", [])]


def human_contents(values: dict[str, Any]) -> list[str]:
    return [m["content"] for m in values.get("messages", []) if m["type"] == "human"]


def last_ai_text(values: dict[str, Any]) -> str:
    ai = [m for m in values.get("messages", []) if m["type"] == "ai"]
    assert ai, values
    content = ai[-1]["content"]
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    return str(content)


async def wait_status(
    client: LangGraphClient,
    thread_id: str,
    run_id: str,
    statuses: tuple[str, ...],
    *,
    within: float = 20.0,
) -> dict[str, Any]:
    """Poll `runs.get` until the run reaches one of `statuses` (tests only; the servers
    under test must not poll)."""
    deadline = time.monotonic() + within
    while True:
        run = await client.runs.get(thread_id, run_id)
        if run["status"] in statuses:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']!r}, wanted {statuses}")
        await asyncio.sleep(0.05)


async def wait_thread_status(
    client: LangGraphClient, thread_id: str, statuses: tuple[str, ...], *, within: float = 20.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        thread = await client.threads.get(thread_id)
        if thread["status"] in statuses:
            return thread
        if time.monotonic() > deadline:
            raise AssertionError(f"thread {thread_id} still {thread['status']!r}")
        await asyncio.sleep(0.05)


def new_id() -> str:
    return str(uuid.uuid4())

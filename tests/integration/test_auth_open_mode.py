"""Keyless ("open") mode is decided at start-up and checked against the real socket.

Regressions of issue 16 items 2 and 3: revoking the last database key must not
open a server, and `uvicorn --factory … --host 0.0.0.0` without keys must not serve
keyless callers that arrive on a non-loopback address (nor log that it is on
127.0.0.1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from agent_server.api.app import create_app
from tests.conftest import ALICE, auth, make_settings
from tests.support.processes import base_env, server_process
from tests.support.servers import serve_in_thread


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent_server.cli", *args], env=env, capture_output=True, text=True
    )


def _non_loopback_address() -> str | None:
    """An IPv4 address of this machine other than loopback (`hostname -I`), if any."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for address in out.split():
        if "." in address and not address.startswith("127."):
            return address
    return None


@contextmanager
def uvicorn_factory(env: dict[str, str], log: Path) -> Iterator[int]:
    """`uvicorn --factory agent_server.api.app:create_app --host 0.0.0.0` on a free port."""

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "agent_server.api.app:create_app",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
        ]

    with server_process(env, log, command=command) as server:
        yield int(server.url.rsplit(":", 1)[1])


def _log_events(log: Path) -> list[dict[str, object]]:
    events = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


async def test_revoking_the_last_db_key_never_opens_the_server(tmp_path: Path) -> None:
    """Item 2: `keys revoke <last>` on a keyed server leaves it closed to keyless callers."""
    settings = make_settings(tmp_path, auth_cache_seconds=0)
    env = base_env(
        tmp_path,
        DATABASE_URL=settings.database_url,
        CHECKPOINT_DB_PATH=str(settings.checkpoint_db_path),
        KNOWLEDGE_DB_PATH=str(settings.knowledge_db_path),
    )
    created = _cli(env, "keys", "create", "--name", "only-key")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/api/tools", headers=auth(key))).status_code == 200
            assert _cli(env, "keys", "revoke", "only-key").returncode == 0
            # No cache (AUTH_CACHE_SECONDS=0): the database says "no active key" now.
            revoked = await client.get("/api/tools", headers=auth(key))
            keyless = await client.get("/api/tools")
            created_doc = await client.post("/api/documents", json={"title": "t", "content": "c"})
    assert revoked.status_code == 401
    assert keyless.status_code == 401
    assert keyless.json()["error"]["code"] == "unauthorized"
    assert created_doc.status_code == 401


async def test_keyless_server_latches_closed_when_a_key_appears(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth_cache_seconds=0)
    env = base_env(
        tmp_path,
        DATABASE_URL=settings.database_url,
        CHECKPOINT_DB_PATH=str(settings.checkpoint_db_path),
        KNOWLEDGE_DB_PATH=str(settings.knowledge_db_path),
    )
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            assert (await client.get("/api/tools")).status_code == 200  # keyless, loopback
            created = _cli(env, "keys", "create", "--name", "late")
            assert created.returncode == 0, created.stderr
            assert (await client.get("/api/tools")).status_code == 401
            assert _cli(env, "keys", "revoke", "late").returncode == 0
            after_revoke = await client.get("/api/tools")
    assert after_revoke.status_code == 401


def test_uvicorn_factory_on_all_addresses_without_keys(tmp_path: Path) -> None:
    """Item 3: whatever started the app, keyless requests are served only on loopback."""
    log = tmp_path / "server.log"
    env = base_env(tmp_path / "data")
    env.pop("HOST", None)  # the app cannot know the bind address from settings
    address = _non_loopback_address()
    with uvicorn_factory(env, log) as port:
        local = httpx.get(f"http://127.0.0.1:{port}/api/tools", timeout=10)
        remote = httpx.get(f"http://{address}:{port}/api/tools", timeout=10) if address else None
        remote_probe = (
            httpx.get(f"http://{address}:{port}/healthz", timeout=10) if address else None
        )
    events = _log_events(log)
    text = log.read_text(errors="replace")
    assert local.status_code == 200
    decisions = [e for e in events if "no API keys configured" in str(e.get("event"))]
    assert len(decisions) == 1, text  # logged once, at start-up
    assert "loopback" in str(decisions[0]["event"])
    assert "on 127.0.0.1" not in text  # the old, false claim
    if address is None:
        pytest.skip("no non-loopback address on this machine: only the start-up log was checked")
    assert remote is not None and remote_probe is not None
    assert remote.status_code == 403, remote.text
    assert remote.json()["error"]["code"] == "loopback_only"
    assert remote.json()["error"]["request_id"]
    assert remote_probe.status_code == 200  # probes stay open
    refusals = [e for e in events if "refused a keyless request" in str(e.get("event"))]
    assert len(refusals) == 1 and address in str(refusals[0]["event"]), text


def test_uvicorn_factory_on_all_addresses_with_keys(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    env = base_env(tmp_path / "data", AGENT_API_KEYS=ALICE)
    address = _non_loopback_address() or "127.0.0.1"
    with uvicorn_factory(env, log) as port:
        keyless = httpx.get(f"http://{address}:{port}/api/tools", timeout=10)
        keyless_local = httpx.get(f"http://127.0.0.1:{port}/api/tools", timeout=10)
        keyed = httpx.get(f"http://{address}:{port}/api/tools", headers=auth(ALICE), timeout=10)
    assert keyless.status_code == 401
    assert keyless_local.status_code == 401  # keys exist: loopback needs one too
    assert keyed.status_code == 200
    assert any("API keys configured" in str(e.get("event")) for e in _log_events(log))


def test_auth_disabled_serves_every_address(tmp_path: Path) -> None:
    address = _non_loopback_address()
    if address is None:
        pytest.skip("no non-loopback address on this machine")
    log = tmp_path / "server.log"
    env = base_env(tmp_path / "data", AUTH_DISABLED="true")
    with uvicorn_factory(env, log) as port:
        remote = httpx.get(f"http://{address}:{port}/api/tools", timeout=10)
    assert remote.status_code == 200
    assert any("AUTH_DISABLED" in str(e.get("event")) for e in _log_events(log))


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "evil.example:8000"},  # a page whose DNS name now points at 127.0.0.1
        {"Host": "192.0.2.2"},
        {"X-Forwarded-For": "203.0.113.9"},  # a local reverse proxy relaying someone
        {"Forwarded": "for=203.0.113.9"},
    ],
)
async def test_keyless_loopback_serves_only_local_callers(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    """The class of item 3 from the other side: a loopback connection is not always a
    local caller (DNS rebinding, a proxy on the same host)."""
    refused = await client.get("/api/tools", headers=headers)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "loopback_only"
    for host in ("localhost:1234", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
        assert (await client.get("/api/tools", headers={"Host": host})).status_code == 200
    assert (await client.get("/healthz", headers=headers)).status_code == 200

"""Throwaway Redis servers for tests: a standalone `redis-server` or a 3-master Cluster
on free ports, started as subprocesses and stopped by the caller (context managers).

Nothing here touches the machine's shared Redis on 6379. When `redis-server` is not
installed the tests skip, except under `CI=true`, where they fail loudly.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool

from tests.support.servers import free_port

STARTUP_TIMEOUT = 10.0


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(1000):
        port = random.randint(20000, 40000)
        if _is_free(port) and _is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def require_redis_binaries() -> None:
    """Skip when redis-server/redis-cli are missing; fail instead under CI=true."""
    missing = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    if not missing:
        return
    message = f"{', '.join(missing)} not installed"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message} (required under CI=true)")
    pytest.skip(message)


def _wait_for_ping(port: int, process: subprocess.Popen[bytes], logfile: Path) -> None:
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    try:
        while True:
            if process.poll() is not None:
                log = logfile.read_text()[-2000:] if logfile.exists() else ""
                raise RuntimeError(
                    f"redis-server on port {port} exited with {process.returncode}:\n{log}"
                )
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start")
            time.sleep(0.02)
    finally:
        client.close()


@contextmanager
def redis_server(
    *extra_args: str, port: int | None = None, workdir: Path | None = None
) -> Iterator[int]:
    """Run one `redis-server` (no persistence) on a free port; yield the port."""
    port = port or free_port()
    with ExitStack() as stack:
        directory = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        logfile = directory / f"redis-{port}.log"
        process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(directory),
                "--logfile",
                str(logfile),
                *extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_ping(port, process, logfile)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def redis_cluster(masters: int = 3) -> Iterator[list[int]]:
    """Run a Redis Cluster of `masters` primaries (no replicas); yield their ports."""
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        ports = []
        for _ in range(masters):
            port = stack.enter_context(
                redis_server(
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"{tmp}/nodes-{uuid.uuid4().hex}.conf",
                    "--cluster-node-timeout",
                    "5000",
                    port=free_cluster_port(),
                    workdir=Path(tmp),
                )
            )
            ports.append(port)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=30,
        )
        _wait_for_cluster_ok(ports)
        yield ports


def _wait_for_cluster_ok(ports: list[int]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    for port in ports:
        client = redis.Redis(port=port)
        try:
            while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node {port} never reached cluster_state:ok")
                time.sleep(0.05)
        finally:
            client.close()


# --- counting what a client sends --------------------------------------------------------


def command_names(payload: bytes) -> list[str]:
    """Names of the RESP commands in `payload` (one or several arrays of bulk strings)."""
    names, pos = [], 0
    while pos < len(payload):
        end = payload.index(b"\r\n", pos)
        count, pos = int(payload[pos + 1 : end]), end + 2
        for i in range(count):
            end = payload.index(b"\r\n", pos)
            length, start = int(payload[pos + 1 : end]), end + 2
            if i == 0:
                names.append(payload[start : start + length].decode().upper())
            pos = start + length + 2
    return names


class Recorder(Protocol):
    def record(self, payload: bytes) -> None: ...


@dataclass
class Traffic:
    """What a client sent: one `round_trips` per write to the socket (a pipeline is
    one), one `commands` entry per command name in it."""

    round_trips: int = 0
    commands: list[str] = field(default_factory=list)

    def record(self, payload: bytes) -> None:
        self.round_trips += 1
        self.commands.extend(command_names(payload))

    def reset(self) -> None:
        self.round_trips = 0
        self.commands.clear()


class RecordingWriter:
    """Stands in for a connection's stream writer and hands every write to a
    `Recorder`: what actually goes on the wire, whichever code path sent it."""

    def __init__(self, writer: Any, recorder: Recorder) -> None:
        self._writer = writer
        self._recorder = recorder

    def write(self, data: bytes) -> None:
        self._recorder.record(bytes(data))
        self._writer.write(data)

    def writelines(self, chunks: Any) -> None:
        chunks = list(chunks)
        self._recorder.record(b"".join(chunks))
        self._writer.writelines(chunks)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)


class CountingConnection(Connection):
    """A redis-py connection whose socket writes go through a `RecordingWriter`."""

    def __init__(self, *args: Any, recorder: Recorder, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorder = recorder

    async def _connect(self) -> None:
        await super()._connect()
        self._writer = RecordingWriter(self._writer, self.recorder)  # type: ignore[assignment]


def counting_client(port: int, recorder: Recorder, **options: Any) -> Redis:
    """An asyncio client on 127.0.0.1:`port` recording what it writes to its sockets."""
    pool = ConnectionPool(
        host="127.0.0.1",
        port=port,
        connection_class=CountingConnection,
        recorder=recorder,
        **options,
    )
    return Redis.from_pool(pool)


def cluster_client(ports: list[int]) -> RedisCluster:
    return RedisCluster(host="127.0.0.1", port=ports[0], decode_responses=False)

"""Several server processes on one port (`WORKERS`), so that one server uses every core.

One Python process runs one turn's Python at a time (the GIL): a server on a 2-core
machine under load leaves a core idle. uvicorn's own supervisor (`workers=`) runs
N processes that accept on one shared socket, restarts a worker that dies or stops
answering its health pings, and passes SIGTERM on for each worker's graceful
shutdown; we use it rather than a supervisor of our own. What it leaves to us:

- **Shared state.** Workers are replicas on one port, so everything a replica
  shares must go through Redis: run slots (a second run on a busy thread is
  refused or queued whichever worker it reaches), run events (a client joins a run
  another worker executes), checkpoints, rate limits and budgets. The embedded
  stores live in one process, so `WORKERS` > 1 without `REDIS_URL` refuses to start.
- **Start-up once.** Migrations, the knowledge-base schema and its seed documents
  run in the supervisor before any worker starts, so workers never race to
  migrate or to seed; each worker then finds the schema current.
- **Settings.** Workers are fresh interpreters (spawned, not forked) that build
  their app from the environment (`serve_app`); the command line's `--host` and
  `--port` reach them through it.
- **Metrics.** prometheus-client keeps per-process counters; with a shared
  `PROMETHEUS_MULTIPROC_DIR` every worker's `/metrics` shows all workers' samples.
  When it is unset, the supervisor makes a private directory for this run (and
  removes it at exit), so `/metrics` is whole without any setting. A worker killed
  mid-run leaves its live gauges behind; the scrape drops them (`observability/metrics.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from agent_server.config import Settings

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


class WorkersNeedRedis(ValueError):
    """`WORKERS` > 1 with the embedded (one-process) stores."""


def check_workers(settings: Settings) -> None:
    if settings.workers > 1 and not settings.redis_url:
        raise WorkersNeedRedis(
            f"WORKERS={settings.workers} needs REDIS_URL: run slots, run events and "
            "checkpoints are shared between processes only through Redis (the embedded "
            "stores live in one process); set REDIS_URL or WORKERS=1"
        )


async def prepare_once(settings: Settings) -> None:
    """What every worker's start would otherwise race on: migrations, the knowledge
    base's schema and its seed documents."""
    from agent_server.resources import build_resources

    resources = build_resources(settings)
    try:
        await resources.prepare()
    finally:
        await resources.aclose()


@contextlib.contextmanager
def metrics_dir() -> Iterator[Path]:
    """The directory the workers' prometheus-client writes its samples to: the
    operator's `PROMETHEUS_MULTIPROC_DIR`, or a private one for this run. Set in the
    environment the workers inherit (each reads it when it imports prometheus-client)."""
    given = os.environ.get(METRICS_DIR_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):  # an earlier run's: prometheus-client asks
            stale.unlink(missing_ok=True)  # for the directory to be wiped between runs
        yield directory
        return
    private = Path(tempfile.mkdtemp(prefix="agent-server-metrics-"))
    os.environ[METRICS_DIR_ENV] = str(private)
    try:
        yield private
    finally:
        os.environ.pop(METRICS_DIR_ENV, None)
        shutil.rmtree(private, ignore_errors=True)


def serve_app() -> FastAPI:
    """The app of one worker process (uvicorn's `factory`): settings from the
    environment, the process its own (garbage-collector tuning)."""
    from agent_server.api.app import create_app

    return create_app(Settings(), own_process=True)


def worker_environment(settings: Settings) -> dict[str, str]:
    """What a worker must see in its environment that the supervisor took from its
    command line."""
    return {"HOST": settings.host, "PORT": str(settings.port)}


def serve_workers(settings: Settings, **uvicorn_options: Any) -> None:
    """Run `settings.workers` processes under uvicorn's supervisor until it stops."""
    import asyncio

    import uvicorn

    os.environ.update(worker_environment(settings))
    with metrics_dir():
        asyncio.run(prepare_once(settings))
        uvicorn.run(
            f"{__name__}:serve_app",
            factory=True,
            workers=settings.workers,
            host=settings.host,
            port=settings.port,
            **uvicorn_options,
        )

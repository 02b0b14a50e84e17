"""The thinnest Python streaming proxy: a reference point for the streaming benchmark.

`python -m bench.proxy --port P --upstream URL` serves `POST /v1/chat/completions`
by forwarding the body to the upstream and relaying its bytes as they arrive:
no parsing, no validation, no graph, no storage. It runs on the stack our
server runs on (uvicorn with the same automatic loop and HTTP parser choice,
Starlette, an httpx client holding its connections), so its time-to-first-token
over a direct client is what one more Python HTTP hop costs on this machine by
itself. The streaming benchmark measures it in the same run as our server; the
difference between the two is what the service itself adds over that hop.

Written by hand because it is the measurement: any proxy library would add its
own work to the very number this is for.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route


def build_app(upstream: str) -> Starlette:
    """A Starlette app relaying chat completions to `upstream` (its base URL)."""
    target = f"{upstream.rstrip('/')}/v1/chat/completions"

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=60.0) as client:
            app.state.client = client
            yield

    async def relay(request: Request) -> Response:
        client: httpx.AsyncClient = request.app.state.client
        upstream_request = client.build_request(
            "POST",
            target,
            content=await request.body(),
            headers={"content-type": request.headers.get("content-type", "application/json")},
        )
        response = await client.send(upstream_request, stream=True)
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            media_type=response.headers.get("content-type"),
            background=BackgroundTask(response.aclose),
        )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/v1/chat/completions", relay, methods=["POST"]),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL")
    args = parser.parse_args(argv)
    uvicorn.run(build_app(args.upstream), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`agent-server` console script."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from agent_server.config import Settings


def serve(settings: Settings) -> None:
    from agent_server.api.app import create_app

    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="agent-server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the HTTP server")
    serve_cmd.add_argument("--host", help="overrides HOST")
    serve_cmd.add_argument("--port", type=int, help="overrides PORT")
    args = parser.parse_args(argv)

    if args.command == "serve":
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        serve(Settings(**overrides))


if __name__ == "__main__":
    main()

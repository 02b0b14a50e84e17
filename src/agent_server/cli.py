"""`agent-server` console script: serve, and manage API keys."""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvicorn

from agent_server.config import Settings
from agent_server.observability.logging import configure_logging


def _key_repository(settings: Settings):  # type: ignore[no-untyped-def]
    from agent_server.persistence.api_keys import ApiKeyRepository
    from agent_server.persistence.db import create_engine

    settings.ensure_data_dirs()
    return ApiKeyRepository(create_engine(settings.database_url))


async def _check_safe(settings: Settings) -> None:
    from agent_server.api.auth import Authenticator

    repo = _key_repository(settings)
    await repo.create_schema()
    await Authenticator(settings, repo).ensure_safe_to_serve(settings.host)


def serve(settings: Settings) -> int:
    from agent_server.api.app import create_app
    from agent_server.api.auth import UnsafeConfiguration
    from agent_server.api.http_limits import bounded_http_protocol

    configure_logging(settings)
    try:
        asyncio.run(_check_safe(settings))
    except UnsafeConfiguration as exc:
        print(f"agent-server: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(settings, own_process=True),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # ours (structlog) stays in charge
        proxy_headers=True,
        # httptools with MAX_HEADER_BYTES/MAX_HEADERS/HEADER_TIMEOUT_SECONDS enforced in the
        # parser, before the head is buffered.
        http=bounded_http_protocol(settings),
        # SIGTERM: stop accepting, give running turns the grace period (streams end
        # themselves with `shutting_down` at its end), then close what is left.
        timeout_graceful_shutdown=settings.shutdown_grace_seconds + 5,
    )
    return 0


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    repo = _key_repository(settings)
    await repo.create_schema()
    if args.keys_command == "create":
        info, key = await repo.create(args.name)
        print(key)
        print(f"created key {info.id} ({info.name}); it is shown only once", file=sys.stderr)
        return 0
    if args.keys_command == "list":
        for info in await repo.list():
            state = "revoked" if info.revoked else "active"
            last = info.last_used_at.isoformat() if info.last_used_at else "never"
            created = info.created_at.isoformat()
            print(f"{info.id}\t{info.name}\t{info.prefix}…\t{state}\t{created}\t{last}")
        return 0
    revoked = await repo.revoke(args.key)
    if not revoked:
        print(f"agent-server: no active key with id or name {args.key!r}", file=sys.stderr)
        return 1
    print(f"revoked {revoked} key(s)", file=sys.stderr)
    return 0


async def _db(settings: Settings, args: argparse.Namespace) -> int:
    from agent_server.persistence import migrate
    from agent_server.persistence.db import create_engine

    settings.ensure_data_dirs()
    engine = create_engine(settings.database_url)
    try:
        if args.db_command == "upgrade":
            await migrate.upgrade(engine)
        current = await migrate.current_revision(engine)
        print(f"schema revision: {current or 'none'} (head: {migrate.head_revision()})")
    finally:
        await engine.dispose()
    return 0


def _chat(args: argparse.Namespace) -> int:
    try:
        from agent_server import chat_cli
    except ImportError as exc:  # rich / httpx-sse: the `chat` extra
        print(
            f"agent-server chat needs the chat extra ({exc.name}): "
            "pip install 'agent-server[chat]'",
            file=sys.stderr,
        )
        return 2
    if args.url:
        url = args.url
    else:
        settings = Settings()
        url = f"http://{settings.host}:{settings.port}"
    return chat_cli.run(url, session_id=args.session, api_key=args.api_key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the HTTP server")
    serve_cmd.add_argument("--host", help="overrides HOST")
    serve_cmd.add_argument("--port", type=int, help="overrides PORT")
    keys_cmd = commands.add_parser("keys", help="manage API keys")
    keys = keys_cmd.add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True)
    keys.add_parser("list", help="list keys (never their values)")
    revoke = keys.add_parser("revoke", help="revoke a key by id, or every key with a name")
    revoke.add_argument("key")
    db_cmd = commands.add_parser("db", help="manage the SQL schema (Alembic migrations)")
    db = db_cmd.add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply pending migrations")
    db.add_parser("current", help="show the schema revision")
    chat_cmd = commands.add_parser("chat", help="chat with a running server in the terminal")
    chat_cmd.add_argument("--url", help="the server (default: http://HOST:PORT from settings)")
    chat_cmd.add_argument("--session", help="continue this session id")
    chat_cmd.add_argument("--api-key", help="sent as Authorization: Bearer")
    args = parser.parse_args(argv)

    if args.command == "serve":
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
        return serve(Settings(**overrides))
    if args.command == "chat":
        return _chat(args)
    if args.command == "db":
        return asyncio.run(_db(Settings(), args))
    return asyncio.run(_keys(Settings(), args))


if __name__ == "__main__":
    sys.exit(main())

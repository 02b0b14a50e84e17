"""`agent-server` console script: serve, and manage API keys."""

from __future__ import annotations

import argparse
import asyncio
import sys

import uvicorn
from pydantic import ValidationError

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
    from agent_server.api.auth import UnsafeConfiguration
    from agent_server.api.http_limits import bounded_http_protocol
    from agent_server.api.workers import WorkersNeedRedis, check_workers, serve_workers

    configure_logging(settings)
    try:
        check_workers(settings)
        asyncio.run(_check_safe(settings))
    except (UnsafeConfiguration, WorkersNeedRedis) as exc:
        print(f"agent-server: {exc}", file=sys.stderr)
        return 2
    options = {
        "log_level": settings.log_level.lower(),
        "log_config": None,  # ours (structlog) stays in charge
        "proxy_headers": True,
        # httptools with MAX_HEADER_BYTES/MAX_HEADERS/HEADER_TIMEOUT_SECONDS enforced in
        # the parser, before the head is buffered.
        "http": bounded_http_protocol(settings),
        # SIGTERM: stop accepting, give running turns the grace period (streams end
        # themselves with `shutting_down` at its end), then close what is left.
        "timeout_graceful_shutdown": settings.shutdown_grace_seconds + 5,
    }
    if settings.workers > 1:
        serve_workers(settings, **options)
        return 0
    from agent_server.api.app import create_app

    uvicorn.run(
        create_app(settings, own_process=True),
        host=settings.host,
        port=settings.port,
        **options,
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


async def _models(settings: Settings) -> int:
    """`models check`: each chain entry against its provider's `/models`; non-zero exit
    on any entry that will not answer (or a models file that does not load)."""
    from agent_server.llm.health import check_models, format_report
    from agent_server.llm.models_file import ModelsFileError, from_settings

    try:
        config = from_settings(settings)
    except ModelsFileError as exc:
        print(f"agent-server: {exc}", file=sys.stderr)
        return 2
    if settings.offline_only:
        print("no models file and no OPENROUTER_API_KEY: the offline model answers")
        return 0
    results = await check_models(config, request_timeout=settings.model_check_timeout_seconds)
    print(f"chain from {config.source}:")
    print(format_report(results))
    return 0 if all(r.ok for r in results) else 1


MAX_KB_FILE_CHARS = 1_000_000
"""The same limit as a document added through `POST /api/documents`."""


async def _kb(settings: Settings, args: argparse.Namespace) -> int:
    """`kb load FILE...`: add Markdown or text files to the knowledge base, one document each."""
    from pathlib import Path

    from agent_server.persistence.db import create_engine
    from agent_server.persistence.documents import DocumentStore, document_title

    settings.ensure_data_dirs()
    # The server's choice: the transcript's file when it is SQLite (FTS5), else our own.
    url = (
        settings.database_url
        if settings.database_is_sqlite
        else f"sqlite+aiosqlite:///{settings.knowledge_db_path}"
    )
    engine = create_engine(url)
    failed = 0
    try:
        store = DocumentStore(engine)
        for name in args.files:
            path = Path(name)
            try:
                content = await asyncio.to_thread(path.read_text, encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                print(f"agent-server: cannot read {name}: {exc}", file=sys.stderr)
                failed += 1
                continue
            if not content.strip() or len(content) > MAX_KB_FILE_CHARS:
                print(
                    f"agent-server: {name} is empty or over {MAX_KB_FILE_CHARS} characters",
                    file=sys.stderr,
                )
                failed += 1
                continue
            metadata = {"source": "kb load", "file": path.name}
            doc = await store.add(args.owner, document_title(path.name, content), content, metadata)
            print(f"{doc.id}  {doc.title}")
    finally:
        await engine.dispose()
    return 1 if failed else 0


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
        settings = _settings()
        url = f"http://{settings.host}:{settings.port}"
    return chat_cli.run(url, session_id=args.session, api_key=args.api_key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the HTTP server")
    serve_cmd.add_argument("--host", help="overrides HOST")
    serve_cmd.add_argument("--port", type=int, help="overrides PORT")
    serve_cmd.add_argument("--workers", type=int, help="overrides WORKERS")
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
    models_cmd = commands.add_parser("models", help="the model chain")
    models = models_cmd.add_subparsers(dest="models_command", required=True)
    models.add_parser("check", help="ask each provider's /models whether it serves its entries")
    kb_cmd = commands.add_parser("kb", help="manage the knowledge base")
    kb = kb_cmd.add_subparsers(dest="kb_command", required=True)
    kb_load = kb.add_parser("load", help="add Markdown or text files, one document each")
    kb_load.add_argument("files", nargs="+", metavar="FILE")
    kb_load.add_argument(
        "--owner",
        default="*",
        help="principal whose documents they become (default '*': every caller's search)",
    )
    chat_cmd = commands.add_parser("chat", help="chat with a running server in the terminal")
    chat_cmd.add_argument("--url", help="the server (default: http://HOST:PORT from settings)")
    chat_cmd.add_argument("--session", help="continue this session id")
    chat_cmd.add_argument("--api-key", help="sent as Authorization: Bearer")
    return _run(parser.parse_args(argv))


def settings_error(exc: ValidationError) -> str:
    """One line per bad setting, named as in the environment (`WORKERS`, `PORT`...)."""
    lines = ["agent-server: invalid settings:"]
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"]).upper() or "settings"
        lines.append(f"  {name}: {error['msg']} (got {error.get('input')!r})")
    return "\n".join(lines)


def _settings(**overrides: object) -> Settings:
    """The settings, or exit 2 naming each bad one (not a traceback)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        print(settings_error(exc), file=sys.stderr)
        raise SystemExit(2) from None


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        given = (("host", args.host), ("port", args.port), ("workers", args.workers))
        overrides = {k: v for k, v in given if v is not None}
        return serve(_settings(**overrides))
    if args.command == "chat":
        return _chat(args)
    if args.command == "db":
        return asyncio.run(_db(_settings(), args))
    if args.command == "kb":
        return asyncio.run(_kb(_settings(), args))
    if args.command == "models":
        return asyncio.run(_models(_settings()))
    return asyncio.run(_keys(_settings(), args))


if __name__ == "__main__":
    sys.exit(main())

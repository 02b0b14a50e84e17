"""Structured logs with structlog, through the standard library.

Everything (our code, uvicorn, LangChain, SQLAlchemy) goes through stdlib
logging and is rendered by structlog's `ProcessorFormatter`: JSON lines in
production (`LOG_FORMAT=json`, or `auto` when stderr is not a terminal),
readable colourless console lines in a terminal. The request id from
`X-Request-ID` is added to every line logged while a request is handled;
principal, session and run ids are bound with `bind_request_context`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from asgi_correlation_id import correlation_id

from agent_server.config import Settings


def _add_request_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    if (request_id := correlation_id.get()) is not None:
        event.setdefault("request_id", request_id)
    return event


def _drop_color_message(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    """uvicorn adds an ANSI-coloured copy of its message as an extra."""
    event.pop("color_message", None)
    return event


def use_json(settings: Settings) -> bool:
    if settings.log_format == "json":
        return True
    if settings.log_format == "console":
        return False
    return not sys.stderr.isatty()


def configure_logging(settings: Settings) -> None:
    """Idempotent: safe to call again (tests build many apps in one process)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json(settings)
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    handler.set_name("agent-server")
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if h.get_name() != "agent-server"]
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # uvicorn's access log duplicates our request line; its own handlers would
    # bypass the formatter.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    for noisy in ("httpx", "httpcore", "openai", "aiosqlite", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)


def bind_request_context(**values: Any) -> None:
    """Add fields (principal, session_id, run_id) to every later line of this request."""
    structlog.contextvars.bind_contextvars(
        **{key: value for key, value in values.items() if value is not None}
    )

"""Request bodies of the Agent Protocol routes: JSON whatever the `Content-Type`.

LangGraph Studio posts JSON labelled `text/plain` (a CORS "simple" type, so the
browser skips a preflight), and FastAPI's body models would 422 on it (Aegra #39);
langgraph-api ignores the header, so do we. Some SDK calls send no body at all
(`cancel`, `copy`): an empty body is `{}`. Validation errors go through FastAPI's
`RequestValidationError`, so they get our one error shape (422, or 400 for JSON
that does not parse, after the 401 for a caller without a key).
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


async def json_body(request: Request) -> Any:
    """The body decoded as JSON; `{}` when empty (or only whitespace)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": f"invalid JSON: {exc}"}]
        ) from exc


def parse(model: type[M], data: Any) -> M:
    """`data` validated as `model`, failures reported the way FastAPI reports a body."""
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        for error in errors:
            error.pop("ctx", None)  # may hold the exception object: not JSON
            error.pop("url", None)
        raise RequestValidationError(errors) from exc


def body_of(model: type[M]) -> Any:
    """A dependency yielding the request's body as `model` (see the module docstring)."""

    async def dependency(request: Request) -> M:
        return parse(model, await json_body(request))

    dependency.__name__ = f"{model.__name__}_body"
    return Annotated[model, Depends(dependency)]

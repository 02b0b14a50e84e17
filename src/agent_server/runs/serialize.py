"""Graph stream chunks → JSON-able data, once, where the run produces them.

Run events are kept in a log that may live in Redis and are read by surfaces that each
encode JSON, so the chunks LangGraph yields (LangChain messages, `Interrupt`s, `Send`s,
exceptions, datetimes…) are turned into plain data here. Messages become their
`model_dump()`, which is the shape langgraph-api sends and both SDKs parse.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any

from langgraph.types import Send


def jsonable(obj: Any) -> Any:
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, Mapping):
        return {str(key): jsonable(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [jsonable(item) for item in obj]
    if isinstance(obj, Send):
        return {"node": obj.node, "args": jsonable(obj.arg)}
    if hasattr(obj, "model_dump") and not isinstance(obj, type):
        return jsonable(obj.model_dump())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if hasattr(obj, "_asdict"):
        return jsonable(obj._asdict())
    if isinstance(obj, BaseException):
        return {"error": type(obj).__name__, "message": str(obj)}
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, timedelta):
        return obj.total_seconds()
    if isinstance(obj, Enum):
        return jsonable(obj.value)
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, bytes | bytearray):
        return obj.decode("utf-8", errors="replace")
    return str(obj)

"""Request and response bodies of the HTTP API (the contract in DESIGN.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_MESSAGE_CHARS = 32_000
MAX_TOOLS_PER_REQUEST = 16


def _nul_at(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where in a parsed JSON value the first NUL character is (keys too), or None."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                return (*path, key)
            if (found := _nul_at(item, (*path, str(key)))) is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _nul_at(item, (*path, index))) is not None:
                return found
    return None


class _Strict(BaseModel):
    """Unknown fields are an error: a typo like `use_tool` must not be silently ignored.

    NUL characters (U+0000) are refused anywhere in a body (422), before anything
    runs: PostgreSQL cannot store them (SQLite can), so accepting them would make
    the same request a 200 on one database and a 500 after the model call on the
    other. No text a client means to send needs one.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if (where := _nul_at(data)) is not None:
            field = ".".join(str(part) for part in where) or "body"
            raise ValueError(f"{field} must not contain NUL (\\u0000) characters")
        return data


class ChatRequest(_Strict):
    message: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS)
    session_id: str | None = Field(default=None, min_length=1, max_length=64)
    use_tools: bool = True
    tools: list[str] | None = Field(
        default=None,
        max_length=MAX_TOOLS_PER_REQUEST,
        description="Restrict the run to these tools (default: all).",
    )
    model: str | None = Field(
        default=None, max_length=200, description="Preferred model; must be a configured one."
    )
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_tokens: int = Field(default=1000, ge=1, le=4000)
    require_approval: list[str] | None = Field(
        default=None,
        max_length=MAX_TOOLS_PER_REQUEST,
        description="Tools whose calls wait for a person's approval in this turn, on top "
        "of the server's `APPROVAL_TOOLS` (adds, never removes).",
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("message must not be blank")
        return value


class Fallback(BaseModel):
    model: str
    reason: str


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class PendingToolCall(BaseModel):
    """A tool call waiting for a person's decision."""

    id: str
    name: str
    args: dict[str, Any]


class ChatResponse(BaseModel):
    session_id: str
    turn_id: str
    response: str
    tools_used: list[str]
    model_used: str | None
    fallbacks: list[Fallback]
    usage: Usage
    cost_usd: float
    latency_ms: int
    degraded: bool
    status: Literal["completed", "awaiting_approval"] = "completed"
    """`awaiting_approval`: the turn paused before `pending_tool_calls`; answer them at
    `POST /api/chat/session/{id}/approval`."""
    pending_tool_calls: list[PendingToolCall] = Field(default_factory=list)


class DecisionIn(_Strict):
    tool_call_id: str = Field(min_length=1, max_length=200)
    action: Literal["approve", "edit", "deny"]
    args: dict[str, Any] | None = Field(
        default=None, description="The call's new arguments (`edit` only)."
    )
    reason: str | None = Field(
        default=None, max_length=2000, description="Why it was denied, told to the model."
    )


class ApprovalRequest(_Strict):
    decisions: list[DecisionIn] = Field(max_length=256)

    def resume(self) -> dict[str, Any]:
        """The graph's resume value."""
        return {"decisions": [d.model_dump(exclude_none=True) for d in self.decisions]}


class Approval(BaseModel):
    """Who decided what about one tool call of a turn."""

    tool_call_id: str
    name: str
    action: str
    args: dict[str, Any] | None = None
    reason: str | None = None
    decided_by: str
    decided_at: datetime


class SessionCreate(_Strict):
    title: str | None = Field(default=None, max_length=200)


class SessionOut(BaseModel):
    session_id: str
    title: str | None = None
    created_at: datetime
    last_active_at: datetime
    expires_at: datetime
    turn_count: int = 0


class SessionList(BaseModel):
    sessions: list[SessionOut]
    limit: int
    offset: int


class TurnOut(BaseModel):
    turn_id: str
    user_message: str
    response: str
    tools_used: list[str]
    model_used: str | None
    fallbacks: list[Fallback]
    usage: Usage
    cost_usd: float
    latency_ms: int
    degraded: bool
    created_at: datetime | None
    approvals: list[Approval] = Field(default_factory=list)


class HistoryOut(BaseModel):
    session_id: str
    title: str | None
    created_at: datetime
    expires_at: datetime
    turns: list[TurnOut]
    limit: int
    offset: int


class ToolOut(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any]


class ToolList(BaseModel):
    tools: list[ToolOut]


class ModelOut(BaseModel):
    id: str
    supports_tools: bool
    context_window: int
    input_price_per_mtok: float
    output_price_per_mtok: float
    default: bool


class ModelList(BaseModel):
    models: list[ModelOut]
    offline_only: bool


class DocumentCreate(_Strict):
    title: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1, max_length=1_000_000)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DocumentOut(BaseModel):
    id: str
    title: str
    metadata: dict[str, Any]
    created_at: datetime | None
    chars: int


class DocumentDetail(DocumentOut):
    content: str


class DocumentList(BaseModel):
    documents: list[DocumentOut]
    limit: int
    offset: int


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str | None = None
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    checks: dict[str, str]

"""Graph state, per-run options, and the dependencies the nodes need.

State holds the conversation (`messages`, merged by `add_messages`) plus
turn-scoped accumulators (tools used, usage, cost, fallbacks). The accumulators
are reset at the start of every turn by the input (`new_turn`) and again by the
persist node when it closes a turn, so a turn started from Studio with only
`messages` sees clean counters too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Annotated, Any

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict  # pydantic rejects typing.TypedDict before 3.12

from agent_server.config import LOCAL_PRINCIPAL, Settings
from agent_server.llm.fallback import ModelChain
from agent_server.observability.metrics import Metrics
from agent_server.persistence.repository import TranscriptRepository
from agent_server.tools.registry import ToolRegistry


class Usage(TypedDict):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class TurnSummary(TypedDict):
    """The response object of a completed turn, as the API returns it."""

    turn_id: str
    response: str
    tools_used: list[str]
    model_used: str | None
    fallbacks: list[dict[str, Any]]
    usage: Usage
    cost_usd: float
    latency_ms: int
    degraded: bool


class AgentState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    # --- turn-scoped accumulators (reset per turn) ---
    turn_started_at: float | None
    tool_rounds: int
    tools_used: list[str]
    model_used: str | None
    fallbacks: list[dict[str, Any]]
    usage: Usage
    cost_usd: float
    degraded: bool
    approvals: list[dict[str, Any]]
    """Who decided what about this turn's tool calls (the approve node)."""
    model_returned_at: float | None
    """When the model node last answered: where a pause for approval began."""
    turn_options: dict[str, Any] | None
    """The options the turn started with, and its message id (`record_options`): a
    resumed run continues with them, whatever the resume's own context says, so a
    person's approval can neither widen the turn's tools nor drop its approvals."""
    # --- result of the last completed turn ---
    last_turn: TurnSummary | None


def zero_usage() -> Usage:
    return {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}


def turn_reset() -> dict[str, Any]:
    """The accumulator values every turn starts from."""
    return {
        "turn_started_at": None,
        "tool_rounds": 0,
        "tools_used": [],
        "model_used": None,
        "fallbacks": [],
        "usage": zero_usage(),
        "cost_usd": 0.0,
        "degraded": False,
        "approvals": [],
        "model_returned_at": None,
        "turn_options": None,
    }


def new_turn(message: str, turn_id: str) -> dict[str, Any]:
    """Graph input for one user message. The message id *is* the turn id, which
    is what makes the persist node idempotent across retries and resumes."""
    return {
        "messages": [HumanMessage(content=message, id=turn_id)],
        **turn_reset(),
        "turn_started_at": time.time(),
    }


@dataclass(frozen=True, slots=True)
class RunOptions:
    """The graph's public context (LangGraph runtime context): what a client may choose
    for a run, from any surface or Studio. Who the caller is and the core's internal
    flags are not here: they travel in config (`RunFlags`), set by the core only."""

    use_tools: bool = True
    tools: tuple[str, ...] | None = None
    model: str | None = None
    temperature: float = 0.7
    max_tokens: int = 1000
    require_approval: tuple[str, ...] | None = None
    """Tools that need a person's approval in this run, on top of `APPROVAL_TOOLS`."""
    sampling: dict[str, Any] | None = None
    """Other sampling parameters passed on to the upstream (`top_p`, `seed`, `stop`…)."""


PUBLIC_CONTEXT: tuple[str, ...] = tuple(f.name for f in fields(RunOptions))
"""What a client may set in a run's context; anything else it sends is dropped."""

_TUPLE_OPTIONS = ("tools", "require_approval")


def current_turn_id(messages: Sequence[BaseMessage]) -> str | None:
    """The id of the turn's message: the last human one."""
    return next((m.id for m in reversed(messages) if isinstance(m, HumanMessage)), None)


def record_options(
    options: RunOptions, turn_id: str | None, retake: str | None = None
) -> dict[str, Any]:
    """`options` as the state keeps them (plain lists: the checkpoint serialiser turns
    tuples into lists anyway), tagged with the turn they belong to, and the retake
    (`RunFlags.retake`) the turn is, so a resume after a pause stores it as one."""
    record: dict[str, Any] = {f.name: getattr(options, f.name) for f in fields(RunOptions)}
    for name in _TUPLE_OPTIONS:
        if record[name] is not None:
            record[name] = list(record[name])
    return {"turn": turn_id, "options": record, "retake": retake}


def _own_record(state: AgentState) -> dict[str, Any] | None:
    stored = state.get("turn_options")
    if isinstance(stored, dict) and stored.get("turn") == current_turn_id(
        state.get("messages") or []
    ):
        return stored
    return None


def turn_retake(state: AgentState, flags: RunFlags) -> str | None:
    """The run id this turn is a retake of: the run's own flag, else the one the
    turn's first run recorded (a regenerate that paused for approval and resumed)."""
    if flags.retake is not None:
        return flags.retake
    record = _own_record(state)
    retake = record.get("retake") if record is not None else None
    return str(retake) if retake else None


def turn_options(state: AgentState, context: RunOptions | None) -> RunOptions:
    """The options a node runs with: the turn's own when the model node recorded them
    for this very turn (a resume after a pause, on any surface, gets its first run's
    options back), else the run's context. A stale record (a turn that failed before
    the persist node reset it) belongs to another message and is ignored."""
    stored = _own_record(state)
    if stored is not None and isinstance(stored.get("options"), dict):
        values = {k: v for k, v in stored["options"].items() if k in PUBLIC_CONTEXT}
        for name in _TUPLE_OPTIONS:
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        return RunOptions(**values)
    return context or RunOptions()


FLAGS_KEY = "__agent_flags"
"""Where the core puts a run's `RunFlags` in `config["configurable"]` (the `__` keeps it
out of checkpoint metadata; the core drops such keys from what clients send)."""


@dataclass(frozen=True, slots=True)
class RunFlags:
    """What the core decides about a run, never the client. Defaults make Studio
    (`langgraph dev`) runs work: the local principal, no streaming hints."""

    principal: str = LOCAL_PRINCIPAL
    """Whose run it is (from authentication): the transcript's owner, whose documents
    `search` reads, who decided an approval."""
    stream: bool = False
    """The client streams: call models token by token so failover can `reset`."""
    new_session: bool = False
    """The message starts a session (no id given): it has no SQL row or lock yet."""
    no_past: bool = False
    """SQL holds no turn of this session (a new one, one made by `POST
    /api/chat/session` and not used yet, a fork or a temporary thread): the model node
    need not look for a past to restore, and anything in its state before the current
    message belongs to no stored turn."""
    as_given: bool = False
    """The state is exactly what the run must see (a fork from a checkpoint, a resume,
    a temporary thread holding the client's own conversation): nothing is restored
    from SQL and nothing before the current message is taken for a failed turn."""
    retake: str | None = None
    """Set (to the run's id) when the run answers again a message already in the state
    (no input, no command: Studio's and Agent Chat UI's "regenerate" / "re-run from
    here"): an earlier run may have stored a turn under that message's id, so this
    answer is stored under a turn id of its own (`retake_turn_id`)."""


RETAKE = ":retake:"
"""Joins a message id and a run id into the id of a turn that re-answers the message."""


TURN_ID_MAX = 64
"""`turns.turn_id` is a String(64) (PostgreSQL enforces it)."""


def retake_turn_id(message_id: str, run_id: str) -> str:
    """`<message id>:retake:<8 hex of the run>` (a uuid message id leaves room); for a
    longer message id, the run id alone: that turn is then not matched to its message
    (`graph/unstored.py` keeps what it cannot judge), but it is stored."""
    turn_id = f"{message_id}{RETAKE}{run_id.replace('-', '')[:8]}"
    return turn_id if len(turn_id) <= TURN_ID_MAX else run_id


def turn_message_id(turn_id: str) -> str:
    """The id of the human message a stored turn answered (a retake's too)."""
    return turn_id.split(RETAKE, 1)[0]


def run_flags(config: Any) -> RunFlags:
    flags = ((config or {}).get("configurable") or {}).get(FLAGS_KEY)
    return flags if isinstance(flags, RunFlags) else RunFlags()


@dataclass(frozen=True, slots=True)
class AgentDeps:
    """Long-lived objects the nodes use, built once by the app (or graphs/agent.py)."""

    settings: Settings
    models: ModelChain
    tools: ToolRegistry
    transcript: TranscriptRepository
    metrics: Metrics = field(default_factory=Metrics)

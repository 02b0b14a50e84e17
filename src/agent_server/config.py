"""The one place that reads the environment.

Every tunable lives on `Settings`; everything else receives a `Settings` (or
values taken from it) as an argument. Keeping env access in one class means a
test can build any configuration without touching `os.environ`, and `.env.example`
can be checked against this class field by field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MODELS = (
    "deepseek/deepseek-chat-v3-0324:free",
    "google/gemini-2.0-flash-exp:free",
    "qwen/qwen3-235b-a22b-07-25:free",
)
OFFLINE_MODEL_ID = "offline"
# Owner of everything when no API keys are configured (loopback-only dev mode).
LOCAL_PRINCIPAL = "local"


def _split_csv(value: object) -> object:
    """Accept `a,b,c` from the environment as well as a real list."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Runtime configuration. Names match DESIGN.md's table; they are a contract."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # --- serving -------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    log_level: str = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    """`auto`: JSON lines unless stderr is a terminal."""
    shutdown_grace_seconds: float = Field(20.0, ge=0)
    """On SIGTERM, running turns get this long to finish; streams still open after
    it end with an `error` event `shutting_down`."""
    workers: int = Field(1, ge=1, le=64)
    """Server processes `agent-server serve` runs on the one port (uvicorn's workers).
    More than one needs `REDIS_URL`: run slots, run events and checkpoints must be
    shared, and only Redis shares them between processes. See `api/workers.py`."""
    gc_gen0_threshold: int = Field(50_000, ge=0)
    """Allocations between young-generation garbage collections once the server is up
    (Python's default is 700); 0 keeps Python's defaults. See `agent_server/gc_tuning.py`."""

    # --- upstream models -----------------------------------------------------
    openrouter_api_key: SecretStr | None = None
    openrouter_base_url: str = "https://openrouter.ai/api/v1"
    agent_models: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_MODELS)
    )
    model_timeout_seconds: float = Field(60.0, gt=0)
    """Timeout of one upstream attempt (also the stall timeout between streamed chunks)."""
    turn_deadline_seconds: float = Field(120.0, gt=0)
    """Everything one turn may spend on model calls, across fallbacks and tool rounds."""
    cooldown_seconds: float = Field(30.0, ge=0)
    """How long a rate-limited model is skipped when the provider sends no Retry-After."""
    failure_threshold: int = Field(3, ge=1)
    failure_cooldown_seconds: float = Field(30.0, ge=0)
    """A model failing `failure_threshold` times in a row is skipped this long."""
    model_specs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """JSON overrides of the bundled model table: {"id": {"supports_tools": false,
    "context_window": 8192, "input_price_per_mtok": 0.1, "output_price_per_mtok": 0.4}}."""
    openrouter_server_fallback: bool = False
    """Send OpenRouter's `models` array so it can fail over server-side first."""
    openrouter_provider: dict[str, Any] | None = None
    """OpenRouter provider preferences, sent as `provider` (JSON)."""
    models_file: Path | None = None
    """TOML file naming providers and the ordered chain (see `llm/models_file.py`); unset:
    `./models.toml` when it exists, else the `OPENROUTER_*`/`AGENT_MODELS` shorthand."""
    model_unavailable_cooldown_seconds: float = Field(600.0, ge=0)
    """How long a model its provider does not serve (404, invalid model id) is skipped,
    and a provider that rejected our key."""
    model_check_timeout_seconds: float = Field(10.0, gt=0)
    """Bound of the start-up (and `agent-server models check`) look-up of each provider's
    `/models` listing."""

    # --- state and data ------------------------------------------------------
    redis_url: str | None = None
    redis_key_prefix: str = "agent"
    """Prefix of every Redis key we write, so deployments can share a Redis."""
    redis_cluster: bool = False
    """`REDIS_URL` points at a Redis Cluster (any node); keys are slot-safe."""
    redis_max_connections: int = Field(1000, ge=10)
    """Connections of the app's Redis pool. Every client following a run (a stream, a
    wait) holds one in `XREAD BLOCK` while it waits; redis-py's default of 100 refused
    connections at 50 concurrent streams."""
    redis_request_timeout_seconds: float = Field(2.5, gt=0)
    """All Redis waits of one HTTP request together (a whole turn, a whole stream): a
    hung Redis gets the request a 503 `store_unavailable` within this, however many
    calls it makes. Each call is also bounded by a 2 s socket timeout (standalone
    Redis; with `REDIS_CLUSTER` only the per-call timeout applies)."""
    redis_known_checkpoints_mb: float = Field(32.0, ge=0)
    """Memory for the latest checkpoint of recent sessions as this replica last wrote or
    read it; a turn's opening read then gets "unchanged" from Redis instead of the
    whole state (Redis checks, so it stays exact across replicas). 0 = off."""
    checkpoint_durability: Literal["exit", "async", "sync"] = "exit"
    """When LangGraph writes checkpoints during a turn. `exit`: once, when the turn
    ends (SQL is the source of truth and a cut-off turn is not kept anyway);
    `async`/`sync`: after every step, for mid-turn resumption, at about five times the writes."""
    checkpoints_per_thread: int | None = Field(20, ge=1)
    """Only this many latest checkpoints are kept per session, in Redis or in the
    embedded SQLite file (unset = all)."""
    database_url: str = "sqlite+aiosqlite:///./data/agent.db"
    db_auto_migrate: bool = True
    """Apply pending migrations at start-up; off → start only if the schema is current."""
    checkpoint_db_path: Path = Path("./data/checkpoints.db")
    knowledge_db_path: Path = Path("./data/knowledge.db")
    knowledge_seed: bool = True
    """Load the seed documents about agent-server into the knowledge base, each once, on
    the first start that sees it, so a first "search for fallback" finds something."""
    session_ttl_seconds: int = Field(3600, ge=1)
    history_window: int = Field(20, ge=1)

    # --- agent loop ----------------------------------------------------------
    system_prompt: str = (
        "You are a helpful assistant. Use the tools when they help: the calculator for "
        "arithmetic, weather for current conditions, search for the user's documents. "
        "Answer concisely and state tool results plainly."
    )
    approval_tools: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Tools whose calls wait for a person's approval (comma-separated names); a request
    may add tools for its own run (`require_approval`), never remove any."""
    max_tool_rounds: int = Field(6, ge=1, le=50)
    max_tool_calls_per_round: int = Field(16, ge=1, le=1000)
    """Tool calls one model reply may make; the calls beyond it are not run and get an
    error result the model can read."""
    tool_timeout_seconds: float = Field(10.0, gt=0)

    # --- tools ---------------------------------------------------------------
    weather_geocoding_url: str = "https://geocoding-api.open-meteo.com/v1/search"
    weather_forecast_url: str = "https://api.open-meteo.com/v1/forecast"
    weather_timeout_seconds: float = Field(5.0, gt=0)
    weather_cache_seconds: float = Field(300.0, ge=0)
    search_top_k: int = Field(5, ge=1, le=50)

    # --- HTTP and security -----------------------------------------------------
    agent_api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    auth_disabled: bool = False
    """Serve without API keys on a non-loopback address. Only for trusted networks."""
    rate_limit_per_minute: int = Field(60, ge=1)
    daily_token_budget: int | None = Field(None, ge=1)
    """Tokens per principal per day (window starts at first use); unset = no budget."""
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(16 * 1024, ge=1024, le=1024 * 1024)
    """Largest request head (request line and headers): 431 above. `agent-server serve`
    enforces it in the HTTP parser, before the head is buffered (see `api/http_limits.py`)."""
    max_headers: int = Field(100, ge=8, le=10_000)
    """Most request header fields: 431 above."""
    header_timeout_seconds: float = Field(10.0, gt=0)
    """A request head must arrive whole within this of its first byte (408 otherwise;
    `agent-server serve` only): a client dribbling headers cannot hold a connection."""
    metrics_require_key: bool = True
    """`/metrics` needs an API key like `/api` (Prometheus: `authorization.credentials`);
    false opens it to anyone who can reach the port."""
    max_stream_seconds: float = Field(300.0, gt=0)
    auth_cache_seconds: float = Field(10.0, ge=0)
    """How long a key lookup is trusted: bounds DB load and how late a revocation bites."""
    lock_ttl_seconds: float = Field(30.0, gt=0)
    """A session lock whose holder died frees itself after this long (Redis)."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins allowed by CORS; empty = CORS off."""
    sse_ping_seconds: float = Field(15.0, gt=0)

    @field_validator(
        "agent_models", "agent_api_keys", "cors_origins", "approval_tools", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("agent_models")
    @classmethod
    def _non_empty_models(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("AGENT_MODELS must name at least one model")
        return value

    @property
    def offline_only(self) -> bool:
        """No models file and no upstream key: the built-in offline model answers."""
        if self.resolved_models_file is not None:
            return False
        return self.openrouter_api_key is None or not self.openrouter_api_key.get_secret_value()

    @property
    def resolved_models_file(self) -> Path | None:
        """`MODELS_FILE`, else `./models.toml` when present, else None (the shorthand)."""
        if self.models_file is not None:
            return self.models_file
        default = Path("models.toml")
        return default if default.is_file() else None

    def secret_from_env(self, name: str) -> SecretStr | None:
        """The secret in environment variable `name` (a models-file provider's
        `api_key_env`): a setting of that name first (so `OPENROUTER_API_KEY` given to
        `Settings` counts), then the process environment, then the `.env` file."""
        field_value = getattr(self, name.lower(), None) if name.isupper() else None
        if isinstance(field_value, SecretStr):
            return field_value
        value = os.environ.get(name)
        if value is None:
            env_file = self.model_config.get("env_file")
            if isinstance(env_file, str) and Path(env_file).is_file():
                value = dotenv_values(env_file).get(name)
        return SecretStr(value) if value else None

    @property
    def database_is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def ensure_data_dirs(self) -> None:
        """Create the folders that embedded stores write into (`./data` by default)."""
        for path in (self.checkpoint_db_path, self.knowledge_db_path):
            path.parent.mkdir(parents=True, exist_ok=True)
        if self.database_is_sqlite:
            _, _, file_part = self.database_url.partition(":///")
            if file_part and file_part != ":memory:":
                Path(file_part).parent.mkdir(parents=True, exist_ok=True)

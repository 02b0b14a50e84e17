"""The models file (`MODELS_FILE`, TOML): named providers and the ordered chain.

```toml
[providers.openrouter]
base_url = "https://openrouter.ai/api/v1"
api_key_env = "OPENROUTER_API_KEY"      # the variable's name; the key never goes here
compat = "openrouter"

[providers.local]
base_url = "http://127.0.0.1:11434/v1"  # no api_key_env: a keyless local server
compat = "ollama"

[[chain]]
provider = "openrouter"
model = "deepseek/deepseek-chat-v3-0324:free"

[[chain]]
provider = "local"
model = "qwen2.5:7b"
supports_tools = true
context_window = 32768
```

Without a models file, `OPENROUTER_API_KEY`/`OPENROUTER_BASE_URL`/`AGENT_MODELS`/
`MODEL_SPECS` describe a one-provider chain exactly as before (`from_settings`).
Parsing is `tomllib` (standard library); validation is pydantic, so a typo in a
field name is an error naming the field rather than a silently ignored line.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent_server.config import Settings
from agent_server.llm.compat import PROFILES, profile
from agent_server.llm.providers import PROVIDER_NAME, Provider
from agent_server.llm.registry import ModelSpec, specs_for

SHORTHAND_PROVIDER = "openrouter"
"""Name of the one provider described by the `OPENROUTER_*` variables."""


class ModelsFileError(ValueError):
    """The models file is missing, not TOML, or describes an impossible chain."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _ProviderIn(_Strict):
    base_url: str = Field(min_length=1)
    api_key_env: str | None = Field(default=None, min_length=1)
    compat: str = "openai"
    headers: dict[str, str] = Field(default_factory=dict)
    drop_params: list[str] = Field(default_factory=list)

    @field_validator("compat")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown compat {value!r} (one of: {', '.join(PROFILES)})")
        return value


class _EntryIn(_Strict):
    provider: str
    model: str = Field(min_length=1)
    supports_tools: bool | None = None
    context_window: int | None = Field(default=None, ge=1)
    input_price_per_mtok: float | None = Field(default=None, ge=0)
    output_price_per_mtok: float | None = Field(default=None, ge=0)


class _FileIn(_Strict):
    providers: dict[str, _ProviderIn]
    chain: list[_EntryIn] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class ChainItem:
    provider: Provider
    spec: ModelSpec


@dataclass(frozen=True, slots=True)
class ModelsConfig:
    providers: dict[str, Provider]
    chain: list[ChainItem]
    source: str
    """Where it came from: the file's path, or "environment"."""


def load_models_file(path: Path, settings: Settings) -> ModelsConfig:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelsFileError(f"cannot read models file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ModelsFileError(f"models file {path} is not valid TOML: {exc}") from exc
    return parse_models(raw, settings, source=str(path))


def parse_models(raw: dict[str, Any], settings: Settings, *, source: str) -> ModelsConfig:
    try:
        parsed = _FileIn.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ModelsFileError(f"models file {source}: {problems}") from None
    providers: dict[str, Provider] = {}
    for name, item in parsed.providers.items():
        if not PROVIDER_NAME.match(name):
            raise ModelsFileError(
                f"models file {source}: provider name {name!r} must match {PROVIDER_NAME.pattern}"
            )
        compat = profile(item.compat).with_dropped(item.drop_params)
        providers[name] = Provider(
            name=name,
            base_url=item.base_url.rstrip("/"),
            api_key_env=item.api_key_env,
            compat=compat,
            headers=dict(item.headers),
            api_key=settings.secret_from_env(item.api_key_env) if item.api_key_env else None,
        )
    chain = []
    seen: set[tuple[str, str]] = set()
    for index, entry in enumerate(parsed.chain):
        provider = providers.get(entry.provider)
        if provider is None:
            raise ModelsFileError(
                f"models file {source}: chain[{index}] names provider {entry.provider!r}, "
                f"not one of [providers]: {', '.join(providers) or 'none'}"
            )
        if (entry.provider, entry.model) in seen:
            raise ModelsFileError(
                f"models file {source}: chain[{index}] repeats {entry.provider}/{entry.model}"
            )
        seen.add((entry.provider, entry.model))
        (spec,) = specs_for([entry.model], settings.model_specs)
        overrides = {
            k: v
            for k, v in entry.model_dump(exclude={"provider", "model"}).items()
            if v is not None
        }
        chain.append(ChainItem(provider, replace(spec, **overrides)))
    return ModelsConfig(providers, chain, source)


def from_settings(settings: Settings) -> ModelsConfig:
    """The models file when there is one, else the one-provider shorthand."""
    path = settings.resolved_models_file
    if path is not None:
        return load_models_file(path, settings)
    # The `openrouter` profile fixes nothing: it only allows OpenRouter's extras, which
    # the shorthand has always sent to whatever `OPENROUTER_BASE_URL` names when asked.
    provider = Provider(
        name=SHORTHAND_PROVIDER,
        base_url=settings.openrouter_base_url,
        api_key_env="OPENROUTER_API_KEY",
        compat=PROFILES["openrouter"],
        api_key=settings.openrouter_api_key,
    )
    specs = specs_for(settings.agent_models, settings.model_specs)
    return ModelsConfig(
        {provider.name: provider}, [ChainItem(provider, spec) for spec in specs], "environment"
    )

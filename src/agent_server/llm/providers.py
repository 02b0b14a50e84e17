"""A model provider: one OpenAI-compatible endpoint, its credentials and its dialect.

The chain may mix providers (OpenRouter first, OpenAI second, a local Ollama last);
each one's key is read from the environment variable it names, never from the
models file and never logged, and a provider that names no variable is keyless (a
local server needs no fake key).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import SecretStr

from agent_server.llm.compat import PROFILES, Compat

PROVIDER_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""Provider names become cooldown keys, metric labels and log fields: kept plain."""
KEYLESS_PLACEHOLDER = "no-key"
"""Sent as the bearer token to keyless providers: the OpenAI SDK refuses an empty key,
and local servers (Ollama, vLLM and llama.cpp without `--api-key`) ignore it."""


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    base_url: str
    api_key_env: str | None = None
    """Environment variable holding the key; None = keyless."""
    compat: Compat = field(default_factory=lambda: PROFILES["openai"])
    headers: dict[str, str] = field(default_factory=dict)
    """Extra HTTP headers (e.g. OpenRouter's `HTTP-Referer`); never secrets."""
    api_key: SecretStr | None = field(default=None, repr=False, compare=False)
    """The key, resolved from `api_key_env` when the chain is built."""

    @property
    def keyless(self) -> bool:
        return self.api_key_env is None

    @property
    def usable(self) -> bool:
        """Keyless, or its key variable is set."""
        return self.keyless or (self.api_key is not None and bool(self.api_key.get_secret_value()))

    def bearer(self) -> str:
        if self.api_key is not None and self.api_key.get_secret_value():
            return self.api_key.get_secret_value()
        return KEYLESS_PLACEHOLDER

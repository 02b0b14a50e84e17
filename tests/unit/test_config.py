"""Settings: the contract names, CSV parsing, and `.env.example` listing every setting."""

from __future__ import annotations

import re
from pathlib import Path

from agent_server.config import DEFAULT_MODELS, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - listed == set(), "settings missing from .env.example"
    assert listed - fields == set(), ".env.example names unknown settings"


def test_defaults_match_the_design_table() -> None:
    s = Settings(_env_file=None)
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.openrouter_api_key is None and s.offline_only
    assert s.openrouter_base_url == "https://openrouter.ai/api/v1"
    assert s.agent_models == list(DEFAULT_MODELS)
    assert s.redis_url is None
    assert s.database_url == "sqlite+aiosqlite:///./data/agent.db"
    assert (s.session_ttl_seconds, s.history_window, s.rate_limit_per_minute) == (3600, 20, 60)
    assert s.agent_api_keys == []


def test_csv_settings_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("AGENT_MODELS", "a/b, c/d:free ,")
    monkeypatch.setenv("AGENT_API_KEYS", "k1,k2")
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-x")
    s = Settings(_env_file=None)
    assert s.agent_models == ["a/b", "c/d:free"]
    assert [k.get_secret_value() for k in s.agent_api_keys] == ["k1", "k2"]
    assert not s.offline_only
    assert "sk-x" not in repr(s) and "k1" not in repr(s)

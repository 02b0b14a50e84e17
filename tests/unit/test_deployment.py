"""Docker can't run here: check that the image and compose file agree with the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from agent_server.config import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {name.upper() for name in Settings.model_fields}


def test_image_runs_the_console_script_on_all_interfaces() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert 'CMD ["agent-server", "serve"]' in dockerfile
    assert "agent-server" in scripts
    env_names = set(re.findall(r"^\s*(?:ENV\s+)?([A-Z_]+)=", dockerfile, flags=re.M))
    assert {"HOST", "PORT"} <= env_names
    assert env_names - {"PYTHONUNBUFFERED"} <= SETTINGS
    assert "HOST=0.0.0.0" in dockerfile
    assert "USER agent" in dockerfile  # not root


def test_compose_env_names_are_settings() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    agent = compose["services"]["agent"]
    assert set(agent["environment"]) <= SETTINGS
    assert agent["environment"]["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert agent["environment"]["REDIS_URL"].startswith("redis://redis:")
    # Reachable address: the server refuses to start without keys, so compose demands them.
    assert "AGENT_API_KEYS" in agent["environment"]
    assert {"redis", "postgres"} <= set(compose["services"])
    assert {"redis", "postgres"} <= set(agent["depends_on"])

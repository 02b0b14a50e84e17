"""`agent-server models check` against fakes whose `/models` lists or omits the chain's
models, a fake rejecting our key, and a dead port; and the same check at start-up."""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_server import cli
from agent_server.config import Settings
from agent_server.llm.health import startup_check
from agent_server.llm.models_file import parse_models
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, fake_upstream
from tests.support.servers import free_port


@pytest.fixture(scope="module")
def upstreams() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    with fake_upstream() as a, fake_upstream() as b:
        yield a, b


@pytest.fixture
def fakes(
    upstreams: tuple[FakeUpstream, FakeUpstream], monkeypatch: pytest.MonkeyPatch
) -> tuple[FakeUpstream, FakeUpstream]:
    for fake in upstreams:
        fake.reset()
    monkeypatch.setenv("CHECK_KEY_A", "sk-check-a")
    return upstreams


def write_models(path: Path, a_url: str, b_url: str, dead_url: str) -> Path:
    path.write_text(
        f"""
[providers.alpha]
base_url = "{a_url}"
api_key_env = "CHECK_KEY_A"

[providers.beta]
base_url = "{b_url}"
compat = "ollama"

[providers.gone]
base_url = "{dead_url}"
compat = "vllm"

[[chain]]
provider = "alpha"
model = "served-model"

[[chain]]
provider = "alpha"
model = "retired-model"

[[chain]]
provider = "beta"
model = "qwen2.5:7b"

[[chain]]
provider = "gone"
model = "Qwen/Qwen2.5-7B-Instruct"
""",
        encoding="utf-8",
    )
    return path


def run_check(monkeypatch: pytest.MonkeyPatch, path: Path) -> int:
    monkeypatch.setenv("MODELS_FILE", str(path))
    monkeypatch.setenv("MODEL_CHECK_TIMEOUT_SECONDS", "3")
    return cli.main(["models", "check"])


def test_reports_each_entry_and_fails_on_any_problem(
    fakes: tuple[FakeUpstream, FakeUpstream],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = fakes
    a.served_models = ["served-model", "other"]
    a.api_key = "sk-check-a"
    b.served_models = ["qwen2.5:7b"]
    dead = f"http://127.0.0.1:{free_port()}/v1"
    path = write_models(tmp_path / "models.toml", a.base_url, b.base_url, dead)
    assert run_check(monkeypatch, path) == 1
    out = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    assert lines == {
        "alpha/served-model": "found",
        "alpha/retired-model": "not_served",
        "beta/qwen2.5:7b": "found",
        "gone/Qwen/Qwen2.5-7B-Instruct": "unreachable",
    }
    assert a.listing_requests[-1]["authorization"] == "Bearer sk-check-a"
    assert "sk-check-a" not in out


def test_all_found_exits_zero(
    fakes: tuple[FakeUpstream, FakeUpstream],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = fakes
    a.served_models = ["served-model", "retired-model"]
    b.served_models = ["qwen2.5:7b", "Qwen/Qwen2.5-7B-Instruct"]
    path = write_models(tmp_path / "models.toml", a.base_url, b.base_url, b.base_url)
    assert run_check(monkeypatch, path) == 0
    assert capsys.readouterr().out.count(" found") == 4


def test_auth_failure_and_missing_key_are_problems(
    fakes: tuple[FakeUpstream, FakeUpstream],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = fakes
    a.api_key = "a-key-we-do-not-have"
    b.served_models = ["qwen2.5:7b", "Qwen/Qwen2.5-7B-Instruct"]
    path = write_models(tmp_path / "models.toml", a.base_url, b.base_url, b.base_url)
    assert run_check(monkeypatch, path) == 1
    assert "alpha/served-model" in (out := capsys.readouterr().out)
    assert out.count("auth_failed") == 2
    monkeypatch.delenv("CHECK_KEY_A")
    assert run_check(monkeypatch, path) == 1
    assert capsys.readouterr().out.count("no_key  (CHECK_KEY_A is not set)") == 2


def test_broken_models_file_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        '[providers.x]\nbase_url = "http://x"\n[[chain]]\nprovider = "y"\nmodel = "m"\n'
    )
    assert run_check(monkeypatch, path) == 2
    assert "names provider 'y'" in capsys.readouterr().err


async def test_startup_check_warns_once_per_bad_entry_and_skips_keyless_missing(
    fakes: tuple[FakeUpstream, FakeUpstream],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b = fakes
    a.served_models = ["served-model"]
    b.served_models = ["qwen2.5:7b"]
    dead = f"http://127.0.0.1:{free_port()}/v1"
    path = write_models(tmp_path / "models.toml", a.base_url, b.base_url, dead)
    settings = make_settings(tmp_path, models_file=path, model_check_timeout_seconds=3.0)
    with caplog.at_level(logging.WARNING, logger="agent_server.llm.health"):
        results = await startup_check(settings)
    assert [r.status for r in results] == ["found", "not_served", "found", "unreachable"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "agent_server.llm.health"]
    assert len(warnings) == 2
    assert "alpha/retired-model will not answer: not_served" in warnings[0]
    assert "gone/Qwen/Qwen2.5-7B-Instruct will not answer: unreachable" in warnings[1]

    # No key: that provider's entries are not in the chain, so not checked either.
    monkeypatch.delenv("CHECK_KEY_A")
    caplog.clear()
    listed_before = len(a.listing_requests)
    results = await startup_check(
        make_settings(tmp_path, models_file=path, model_check_timeout_seconds=3.0)
    )
    assert [r.provider for r in results] == ["beta", "gone"]
    assert len(a.listing_requests) == listed_before


ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_example_parses_openrouter_first_openai_second_ollama_last(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-test")
    raw = tomllib.loads((ROOT / "models.example.toml").read_text(encoding="utf-8"))
    config = parse_models(
        raw, Settings(_env_file=None, openrouter_api_key="sk-or-test"), source="example"
    )
    assert [i.provider.name for i in config.chain] == [
        "openrouter",
        "openrouter",
        "openai",
        "local",
    ]
    openrouter, openai, local = (config.providers[n] for n in ("openrouter", "openai", "local"))
    assert openrouter.bearer() == "sk-or-test"  # OPENROUTER_API_KEY given to Settings counts
    assert openai.bearer() == "sk-openai-test"
    assert local.keyless and local.usable and local.compat.name == "ollama"
    gpt = config.chain[2].spec
    assert (gpt.id, gpt.context_window, gpt.input_price_per_mtok) == ("gpt-4o-mini", 128000, 0.15)
    assert "sk-openai-test" not in repr(openai)  # keys never in reprs (logs)

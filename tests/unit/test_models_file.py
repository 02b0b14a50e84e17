"""The models file and compat profiles, without I/O."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from agent_server.config import Settings
from agent_server.llm.compat import PROFILES, StreamFixer, profile
from agent_server.llm.models_file import ModelsFileError, from_settings, parse_models


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


def test_a_provider_without_its_key_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNSET_KEY_VAR", raising=False)
    raw = {
        "providers": {"p": {"base_url": "http://x/v1", "api_key_env": "UNSET_KEY_VAR"}},
        "chain": [{"provider": "p", "model": "m"}],
    }
    config = parse_models(raw, settings(), source="t")
    assert not config.providers["p"].usable


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"providers": {}, "chain": []}, "chain"),
        (
            {"providers": {"p": {"base_url": "u"}}, "chain": [{"provider": "q", "model": "m"}]},
            "names provider 'q'",
        ),
        (
            {"providers": {"p": {"base_url": "u", "compat": "tgi"}}, "chain": []},
            "unknown compat 'tgi'",
        ),
        (
            {"providers": {"p": {"base_url": "u", "api_key": "sk-in-file"}}, "chain": []},
            "api_key",  # a key in the file is refused, by name
        ),
        (
            {
                "providers": {"p": {"base_url": "u"}},
                "chain": [{"provider": "p", "model": "m"}, {"provider": "p", "model": "m"}],
            },
            "repeats p/m",
        ),
        (
            {
                "providers": {"bad name": {"base_url": "u"}},
                "chain": [{"provider": "bad name", "model": "m"}],
            },
            "must match",
        ),
    ],
)
def test_impossible_files_are_clear_errors(raw: dict, message: str) -> None:
    with pytest.raises(ModelsFileError, match=message) as info:
        parse_models(raw, settings(), source="models.toml")
    assert "sk-in-file" not in str(info.value)


def test_without_a_file_the_old_variables_describe_one_provider() -> None:
    config = from_settings(
        settings(
            openrouter_api_key=SecretStr("sk-or"),
            openrouter_base_url="http://127.0.0.1:9/v1",
            agent_models=["a", "b"],
            model_specs={"b": {"context_window": 4096}},
            models_file=None,
        )
    )
    assert config.source == "environment"
    assert [(i.provider.name, i.spec.id) for i in config.chain] == [
        ("openrouter", "a"),
        ("openrouter", "b"),
    ]
    assert config.chain[1].spec.context_window == 4096
    assert config.chain[0].provider.base_url == "http://127.0.0.1:9/v1"


def test_profiles_fix_requests_without_touching_the_input() -> None:
    payload = {
        "model": "m",
        "max_completion_tokens": 10,
        "parallel_tool_calls": False,
        "stream_options": {"include_usage": True},
        "messages": [
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]},
            {"role": "assistant", "content": None},
        ],
    }
    fixed = profile("llamacpp").with_dropped(["stream_options"]).fix_request(payload)
    assert fixed["max_tokens"] == 10 and "max_completion_tokens" not in fixed
    assert "parallel_tool_calls" not in fixed and "stream_options" not in fixed
    assert [m["content"] for m in fixed["messages"]] == ["", None]
    assert payload["messages"][0]["content"] is None and "max_completion_tokens" in payload
    assert PROFILES["openai"].fix_request(payload) == payload
    with pytest.raises(ValueError, match="unknown compat"):
        profile("nope")


def test_stream_fixer_keeps_each_tool_calls_name_once() -> None:
    fixer = StreamFixer(PROFILES["llamacpp"])

    def delta(index: int, name: str, args: str) -> dict:
        call = {"index": index, "id": f"c{index}", "function": {"name": name, "arguments": args}}
        return {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}

    out = [
        fixer.fix(delta(0, "calc", "{")),
        fixer.fix(delta(0, "calc", "}")),
        fixer.fix(delta(1, "w", "{}")),
    ]
    functions = [c["choices"][0]["delta"]["tool_calls"][0]["function"] for c in out]
    assert [f.get("name") for f in functions] == ["calc", None, "w"]
    assert out[1]["choices"][0]["delta"]["tool_calls"][0].get("id") is None

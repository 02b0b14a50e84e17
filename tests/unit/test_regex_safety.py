"""No regular expression of the package may take super-linear time on any input (issue 16).

`llm/offline.py` once had trailer patterns with nested quantifiers; one 39-byte message
("weather in a , , , , , , , , , , , , ,b") took 20 s on the event loop. This module keeps
that class of defect out:

* a property check finds every compiled pattern of the package (module attributes, the
  values of module-level tuples, lists and dicts, and class attributes; Python `re` and RE2)
  and times each on adversarial strings: long runs of each character class (spaces,
  punctuation, digits, letters, Hangul, mixes) after the words the pattern looks for and
  before a character that makes it fail. Doubling the input may at most ~triple the time,
  and the longest input may take at most `K` times a `str.count` over the same text;
* a structural rule: the modules that read the user's message classify it with RE2 only,
  apart from a short, reasoned allowlist of linear Python patterns;
* regression tests with the issue's two reproductions through `OfflineChatModel.ainvoke`.

The timing runs in a child process with a deadline: CPython's `re` cannot be interrupted
while it matches (no signal, no thread can stop it), so an exponential pattern would hang
the test run instead of failing it. The child reports which pattern it was on.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import re2
from langchain_core.messages import HumanMessage

import agent_server
from agent_server.llm.offline import MAX_CLASSIFIED_CHARS, OfflineChatModel

REPO = Path(__file__).resolve().parents[2]

SIZES = (2000, 4000)
"""Characters of adversarial run; each pattern is timed at both."""

MAX_DOUBLING_RATIO = 3.0
"""Linear time doubles with a 2x input; 3x leaves room for noise, a quadratic gives 4x."""

K = 3000
"""The longest input may take at most K x `str.count` over it.

Measured here: the package's (linear) patterns take 10-300x a `str.count` (Python `re` steps
per character, RE2's Python wrapper encodes the text to UTF-8 first); the quadratic `\\s+$`
that `split_stream_chunks` used took ~70,000x at 4,000 characters; the exponential trailer
patterns of issue 16 never finish (the child's deadline catches them).
"""

CHILD_DEADLINE_S = 180.0

UNITS = (
    " ",
    "\t",
    "\n",
    ",",
    ", ",
    ".",
    "?",
    "=",
    "+",
    "1",
    "1 ",
    "a",
    "a ",
    "\u00a0",
    "\uac00 ",
    "a,1 .",
)
"""Repeated units: every character class a pattern quantifies over, alone and mixed."""

PREFIXES = (
    "",
    "weather in a ",
    "calculate 1",
    "search for ",
    "what is ",
    "how hot is it in ",
    "10 km ",
    "\uc11c\uc6b8 ",
)
"""What the offline model's patterns look for first, so the run reaches their quantifiers."""

TRAILERS = ("x", "\x01")
"""Characters that make the match fail at the very end (the backtracking trigger)."""

_ALLOWED_PYTHON_RE: dict[str, str] = {
    "agent_server.llm.offline:TOKEN_RE": (
        "token counting over whole conversations: one alternation of two disjoint "
        "character-class runs, no nesting; RE2's wrapper costs ~30x per match"
    ),
    "agent_server.llm.offline:_WORD_RUN_RE": (
        "one character-class run (\\S+) over model output: linear; splits stream chunks"
    ),
}
"""Python `re` patterns allowed in modules that read user text, each with its reason."""

_RE2_ONLY_MODULES = ("agent_server.llm.offline", "agent_server.tools")

_NOT_IMPORTABLE = ("agent_server.persistence.migrations",)
"""Alembic scripts: they run only inside alembic (``context.config``), and hold no pattern."""
"""Modules that classify or parse the user's message: their patterns must be RE2."""


# ---------------------------------------------------------------------------------------------
# Finding the patterns
# ---------------------------------------------------------------------------------------------


def _is_pattern(value: Any) -> bool:
    return isinstance(value, re.Pattern | re2._Regexp)


def _patterns_in(name: str, value: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
    if _is_pattern(value):
        yield name, value
    elif depth < 2 and isinstance(value, tuple | list | frozenset | set):
        for index, item in enumerate(value):
            yield from _patterns_in(f"{name}[{index}]", item, depth + 1)
    elif depth < 2 and isinstance(value, dict):
        for key, item in value.items():
            yield from _patterns_in(f"{name}[{key!r}]", item, depth + 1)


def _module_names() -> list[str]:
    return [agent_server.__name__] + [
        info.name
        for info in pkgutil.walk_packages(agent_server.__path__, agent_server.__name__ + ".")
        if not info.name.startswith(_NOT_IMPORTABLE)
    ]


def _import_errors() -> dict[str, str]:
    errors: dict[str, str] = {}
    for module_name in _module_names():
        try:
            importlib.import_module(module_name)
        except Exception as exc:  # any failure to import is reported, whatever it is
            errors[module_name] = f"{type(exc).__name__}: {exc}"
    return errors


def collect_patterns() -> dict[str, Any]:
    """Every compiled pattern of the package, named ``module:attribute[index]``.

    A module that does not import is left out here and reported by
    `test_every_module_imports`, so one broken module cannot hide every other pattern.
    """
    found: dict[str, Any] = {}
    seen: set[int] = set()
    broken = _import_errors()
    for module_name in sorted(_module_names()):
        if module_name in broken:
            continue
        module = importlib.import_module(module_name)
        for attr, value in vars(module).items():
            candidates = list(_patterns_in(f"{module_name}:{attr}", value))
            if isinstance(value, type) and value.__module__ == module_name:
                for cls_attr, cls_value in vars(value).items():
                    candidates += _patterns_in(f"{module_name}:{attr}.{cls_attr}", cls_value)
            for name, pattern in candidates:
                if id(pattern) not in seen:
                    seen.add(id(pattern))
                    found[name] = pattern
    return found


def _words(pattern: Any) -> list[str]:
    """Literal words in a pattern's source, to build prefixes that lead into it."""
    return re.findall(r"[a-z]{2,}", re.sub(r"\\[a-zA-Z]", " ", pattern.pattern))[:3]


def adversarial_inputs(pattern: Any, size: int) -> Iterator[str]:
    words = _words(pattern)
    prefixes = list(PREFIXES) + ([" ".join(words) + " "] if words else [])
    # Runs of the pattern's own words too: "model model model ... x" is what makes
    # r"model .* not found" rescan the rest of the text from every occurrence.
    units = list(UNITS) + [word + " " for word in words]
    for prefix in prefixes:
        for unit in units:
            run = (unit * (size // len(unit) + 1))[:size]
            for trailer in TRAILERS:
                yield prefix + run + trailer


# ---------------------------------------------------------------------------------------------
# The timed property, run in a child process (see the module docstring)
# ---------------------------------------------------------------------------------------------


def _best(func: Any, repeat: int = 2) -> float:
    return min(timeit.repeat(func, number=1, repeat=repeat))


NOISE_FLOOR_S = 1e-3
"""A single input's doubling ratio counts only above this: below it, timer and scheduler
noise on a shared machine swamp it (a quadratic pattern is far above it at these sizes)."""


def _time_pattern(pattern: Any) -> dict[str, Any]:
    """Doubling ratios (all inputs summed, and the worst slow input) and the worst
    slowdown against `str.count`, over every adversarial input and both match modes."""
    small_inputs = list(adversarial_inputs(pattern, SIZES[0]))
    large_inputs = list(adversarial_inputs(pattern, SIZES[1]))
    return _time_inputs(pattern, list(zip(small_inputs, large_inputs, strict=True)))


def _measure(pattern: Any, op: str, small: str, large: str, repeat: int) -> tuple[float, ...]:
    method = getattr(pattern, op)
    t_small = _best(lambda: method(small), repeat)
    t_large = _best(lambda: method(large), repeat)
    t_count = min(timeit.repeat(lambda: large.count("x"), number=20, repeat=repeat)) / 20
    return t_small, t_large, t_count


def _too_slow(t_small: float, t_large: float, t_count: float) -> bool:
    ratio = t_large / max(t_small, 1e-7) if t_large > NOISE_FLOOR_S else 0.0
    return ratio > MAX_DOUBLING_RATIO or t_large / max(t_count, 1e-8) > K


def _time_inputs(pattern: Any, pairs: list[tuple[str, str]]) -> dict[str, Any]:
    total_small = total_large = 0.0
    worst_ratio = worst_k = 0.0
    worst_input = ""
    for small, large in pairs:
        for op in ("search", "fullmatch"):
            t_small, t_large, t_count = _measure(pattern, op, small, large, repeat=2)
            if _too_slow(t_small, t_large, t_count):
                # Confirm with more repeats: on a loaded machine one run can be preempted.
                t_small, t_large, t_count = _measure(pattern, op, small, large, repeat=9)
            total_small += t_small
            total_large += t_large
            if t_large > NOISE_FLOOR_S:
                worst_ratio = max(worst_ratio, t_large / t_small)
            slowdown = t_large / max(t_count, 1e-8)
            if slowdown > worst_k:
                worst_k = slowdown
                worst_input = f"{op}({large[:30]!r}...{large[-5:]!r})"
    total_ratio = total_large / max(total_small, 1e-9)
    return {
        "ratio": max(total_ratio, worst_ratio),
        "total_ratio": total_ratio,
        "k": worst_k,
        "input": worst_input,
    }


def _child_main() -> None:
    for name, pattern in collect_patterns().items():
        print(json.dumps({"start": name}), flush=True)
        result = _time_pattern(pattern)
        if result["ratio"] > MAX_DOUBLING_RATIO or result["k"] > K:
            result = _time_pattern(pattern)  # confirm: a busy machine can stall one run
        print(json.dumps({"name": name, **result}), flush=True)


def _run_child() -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'src'}"}
    code = "from tests.unit.test_regex_safety import _child_main; _child_main()"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=CHILD_DEADLINE_S,
            check=False,
        )
        output, code_ok = done.stdout, done.returncode == 0
    except subprocess.TimeoutExpired as exc:
        raw = exc.stdout or b""
        output = raw.decode() if isinstance(raw, bytes) else raw
        last = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        pytest.fail(
            f"pattern timing did not finish in {CHILD_DEADLINE_S} s: catastrophic "
            f"backtracking in {last[-1].get('start') if last else 'the first pattern'}"
        )
    assert code_ok, done.stderr[-3000:]
    return [json.loads(line) for line in output.splitlines() if '"name"' in line]


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------


def test_every_module_imports() -> None:
    """The walk must see every module, or a pattern could hide in one it skipped."""
    assert _import_errors() == {}


def test_collector_finds_the_offline_patterns_and_others() -> None:
    names = collect_patterns()
    assert "agent_server.llm.offline:_ARITH_VERB_RE" in names
    assert "agent_server.llm.offline:_WEATHER_RES[2]" in names
    assert "agent_server.llm.offline:TOKEN_RE" in names
    assert any(name.startswith("agent_server.llm.errors:") for name in names)
    assert "agent_server.persistence.documents:_WORD" in names


def test_patterns_over_user_text_are_re2() -> None:
    offenders = [
        name
        for name, pattern in collect_patterns().items()
        if name.split(":")[0].startswith(_RE2_ONLY_MODULES)
        and isinstance(pattern, re.Pattern)
        and name not in _ALLOWED_PYTHON_RE
    ]
    assert offenders == [], (
        "these patterns read user text with a backtracking engine; compile them with re2 "
        "(llm.offline._rx) or add a reasoned entry to _ALLOWED_PYTHON_RE"
    )


def test_the_check_catches_backtracking_patterns() -> None:
    """The measure itself must tell a quadratic pattern from a linear one."""
    pairs = [(unit * SIZES[0] + "x", unit * SIZES[1] + "x") for unit in (" ", "\t")]
    quadratic = _time_inputs(re.compile(r"\s+$"), pairs)  # what split_stream_chunks used
    linear = _time_inputs(re.compile(r"\S+"), pairs)
    assert quadratic["k"] > K
    assert linear["k"] < K and linear["ratio"] < MAX_DOUBLING_RATIO


def test_every_pattern_is_linear_on_adversarial_input() -> None:
    results = _run_child()
    assert len(results) >= 15, results  # every pattern was timed, not just a few
    too_slow = [r for r in results if r["ratio"] > MAX_DOUBLING_RATIO or r["k"] > K]
    assert too_slow == [], json.dumps(too_slow, indent=1)


# --- the reproductions through the offline model ------------------------------------

HOSTILE = (
    "weather in a , , , , , , , , , , , , ,b",
    "Calculate 1" + " " * 22 + "x",
    "weather in a " + ", " * 400 + "b",
    "Calculate 1" + " " * (MAX_CLASSIFIED_CHARS - 20) + "x",
    "search for " + "a " * 480 + "?x",
    "weather in a " + ", " * 16_000 + "b",  # 32,000 characters: the API's message limit
)


async def _median_ainvoke(bound: Any, text: str, rounds: int = 5) -> float:
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        await bound.ainvoke([HumanMessage(text)])
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


@pytest.mark.parametrize("text", HOSTILE, ids=lambda t: f"{t[:14]!r}x{len(t)}")
async def test_hostile_messages_cost_what_a_normal_one_does(text: str) -> None:
    from tests.unit.test_offline_model import ALL_TOOLS

    bound = OfflineChatModel().bind_tools(ALL_TOOLS)
    await bound.ainvoke([HumanMessage("warm up")])
    # The baseline is an ordinary message of the same length: the model's work that is
    # linear in the text (token counting) is the same for both, and nothing else may grow.
    ordinary = ("Calculate 10 * 20 " * (len(text) // 18 + 1))[: len(text)]
    baseline = await _median_ainvoke(bound, ordinary)
    hostile = await _median_ainvoke(bound, text)
    # Before the fix the first input alone took 20 s, some 30,000x an ordinary message.
    assert hostile <= 10 * baseline, (hostile, baseline)


async def test_reproduction_is_answered_as_weather() -> None:
    from tests.unit.test_offline_model import ALL_TOOLS

    bound = OfflineChatModel().bind_tools(ALL_TOOLS)
    message = await bound.ainvoke([HumanMessage(HOSTILE[0])])
    assert [call["name"] for call in message.tool_calls] == ["weather"]
    message = await bound.ainvoke([HumanMessage(HOSTILE[1])])
    assert message.tool_calls == []  # "1 ... x" is not arithmetic
    message = await bound.ainvoke([HumanMessage(HOSTILE[-1])])
    assert message.tool_calls == []
    assert str(MAX_CLASSIFIED_CHARS) in message.content  # says why it did not classify


if __name__ == "__main__":
    _child_main()

"""Tests for the safe arithmetic evaluator and the ``calculator`` tool."""

from __future__ import annotations

import builtins
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import ToolMessage

from agent_server.tools import calculator
from agent_server.tools.calculator import (
    MAX_EXPRESSION_LENGTH,
    MAX_NESTING_DEPTH,
    CalculatorError,
    calculate,
    evaluate,
    make_calculator_tool,
)

# Bounded-work guarantee of the evaluator: every refusal is decided in well under this.
FAST_SECONDS = 0.1


# --------------------------------------------------------------------------------------------------
# Correct results
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("10 * 20", 200),
        ("(3+4)*2", 14),
        ("sqrt(16) + 1", 5),
        ("2 ** 10", 1024),
        ("2^10", 1024),
        ("2 ^ 0.5 ^ 2", 1.189207115),  # right-associative like **: 2 ** (0.5 ** 2)
        ("-3 + +4", 1),
        ("-(2 + 3)", -5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("7.5 // 2", 3),
        ("10 / 4", 2.5),
        ("1 / 3", 0.333333333333),
        ("0.1 + 0.2", 0.3),
        ("2 * 3 + 4 * 5", 26),
        ("2 * (3 + 4) * 5", 70),
        ("1e3 + 1", 1001),
        ("1_000 * 3", 3000),
        ("pow(2, 8)", 256),
        ("pow(2, -1)", 0.5),
        ("pow(9, 0.5)", 3),
        ("log(e)", 1),
        ("log(8, 2)", 3),
        ("log(100, 10)", 2),
        ("log10(1000)", 3),
        ("round(3.14159, 2)", 3.14),
        ("round(3.7)", 4),
        ("round(1234, -2)", 1200),
        ("floor(2.7)", 2),
        ("floor(-2.5)", -3),
        ("ceil(2.1)", 3),
        ("abs(-5)", 5),
        ("abs(-2.5)", 2.5),
        ("sin(0)", 0),
        ("cos(0)", 1),
        ("tan(0)", 0),
        ("sin(pi / 2)", 1),
        ("cos(pi)", -1),
        ("pi", 3.14159265359),
        ("e", 2.71828182846),
        ("exp(0)", 1),
        ("exp(1)", 2.71828182846),
        ("sqrt(2) ** 2", 2),
        ("2 \N{MULTIPLICATION SIGN} 3", 6),
        ("9 \N{DIVISION SIGN} 2", 4.5),
        ("  42  ", 42),
        ("2 ** 100", 1267650600228229401496703205376),
        ("10 ** 20", 10**20),
        ("1e20", 1e20),
        ("round(pi * 2.5^2, 2)", 19.63),
    ],
)
def test_evaluate_returns_correct_results(expression: str, expected: float) -> None:
    result = evaluate(expression)
    assert result == pytest.approx(expected, rel=1e-12)
    if isinstance(expected, int):
        assert type(result) is int, f"{expression!r} should give an int, got {result!r}"


@pytest.mark.parametrize(
    ("expression", "expected_type"),
    [
        ("10 * 20", int),  # exact int arithmetic stays int
        ("7 // 2", int),
        ("2.0", int),  # integral float shown as int
        ("sqrt(16)", int),
        ("10 / 4", float),
        ("1e20", float),  # integral but beyond 1e15: stays float
        ("10 ** 20", int),  # exact ints are never converted
    ],
)
def test_result_types(expression: str, expected_type: type) -> None:
    assert type(evaluate(expression)) is expected_type


def test_float_noise_is_rounded_to_12_significant_digits() -> None:
    assert evaluate("0.1 + 0.2") == 0.3
    assert evaluate("1 / 7") == 0.142857142857
    assert evaluate("2 / 3 * 1e-20") == 6.66666666667e-21


def test_calculate_success_shape() -> None:
    assert calculate("  10 * 20 ") == {"success": True, "expression": "10 * 20", "result": 200}


def test_calculate_reports_the_normalized_expression() -> None:
    assert calculate(" 2^10 ") == {"success": True, "expression": "2**10", "result": 1024}
    assert calculate("6 \N{MULTIPLICATION SIGN} 7 \N{DIVISION SIGN} 2")["expression"] == "6 * 7 / 2"


def test_long_flat_chains_are_not_counted_as_nesting() -> None:
    # 200 terms: left-associative chain, only one level of "nesting".
    assert evaluate("+".join(["1"] * 200)) == 200
    assert evaluate("*".join(["1"] * 200)) == 1


# --------------------------------------------------------------------------------------------------
# Hostile, invalid and oversized input
# --------------------------------------------------------------------------------------------------

HOSTILE: list[Any] = [
    pytest.param("__import__('os').system('id')", "not math.sqrt", id="import-os-system"),
    pytest.param("__import__('os')", "'__import__' is not allowed", id="import"),
    pytest.param("().__class__.__bases__", "attribute access", id="dunder-walk"),
    pytest.param("(1).__class__", "attribute access", id="int-attribute"),
    pytest.param("open('/etc/passwd')", "'open' is not allowed", id="open"),
    pytest.param("eval('1')", "'eval' is not allowed", id="eval"),
    pytest.param("9**9**9", "exponent too large", id="9**9**9"),
    pytest.param("9^9^9", "exponent too large", id="9^9^9"),
    pytest.param("10**10**10", "exponent too large", id="10**10**10"),
    pytest.param("2 ** 9999", "result too large", id="pow-too-many-digits"),
    pytest.param("0.5 ** -5000", "result too large", id="negative-exponent-blowup"),
    pytest.param("10 ** 1000", "more than 1000 digits", id="int-over-1000-digits"),
    pytest.param("(10**999) * (10**999)", "more than 1000 digits", id="product-too-big"),
    pytest.param("1/0", "division by zero", id="div-zero"),
    pytest.param("1.5 // 0", "division by zero", id="floordiv-zero"),
    pytest.param("5 % 0", "division by zero", id="mod-zero"),
    pytest.param("0 ** -1", "division by zero", id="zero-negative-power"),
    pytest.param("1+" * 50_000, "too long", id="100KB-string"),
    pytest.param("(" * 10_000 + "1" + ")" * 10_000, "too long", id="10000-parens"),
    pytest.param("(" * 60 + "1" + ")" * 60, "too deeply nested", id="60-parens"),
    pytest.param("sqrt(" * 60 + "1" + ")" * 60, "too deeply nested", id="60-nested-calls"),
    pytest.param("-" * 60 + "1", "too deeply nested", id="60-unary"),
    pytest.param("2**" * 60 + "1", "too deeply nested", id="60-power-chain"),
    pytest.param("-" * 900 + "1", "too deeply nested", id="900-unary"),
    pytest.param("1+" * 300 + "1", "more than 500 elements", id="too-many-nodes"),
    pytest.param("[1,2][0]", "indexing", id="subscript"),
    pytest.param("[1, 2]", "lists", id="list"),
    pytest.param("(1, 2)", "tuples", id="tuple"),
    pytest.param("{1: 2}", "dicts", id="dict"),
    pytest.param("lambda: 1", "lambda", id="lambda"),
    pytest.param("[x for x in range(3)]", "comprehensions", id="listcomp"),
    pytest.param("sum(x for x in range(3))", "'sum' is not allowed", id="genexp-call"),
    pytest.param("f'{1+1}'", "f-strings", id="fstring"),
    pytest.param("x", "unknown name 'x'", id="unknown-name"),
    pytest.param("sqrt", "is a function", id="bare-function"),
    pytest.param("'abc'", "strings are not allowed", id="string"),
    pytest.param('"abc"', "strings are not allowed", id="string-dq"),
    pytest.param("b'abc'", "strings are not allowed", id="bytes"),
    pytest.param("1 if 1 else 2", "conditional expressions", id="ifexp"),
    pytest.param("1 < 2", "comparisons", id="compare"),
    pytest.param("1 and 2", "boolean operators", id="boolop"),
    pytest.param("not 1", "'not' is not supported", id="not"),
    pytest.param("~1", "'~' is not supported", id="invert"),
    pytest.param("1 << 2", "'<<' is not supported", id="shift"),
    pytest.param("1 | 2", "'|' is not supported", id="bitor"),
    pytest.param("1 @ 2", "'@' is not supported", id="matmul"),
    pytest.param("(y := 2)", "assignment expressions", id="walrus"),
    pytest.param("True", "booleans are not allowed", id="true"),
    pytest.param("None", "unsupported literal", id="none"),
    pytest.param("...", "unsupported literal", id="ellipsis"),
    pytest.param("1j", "complex numbers", id="complex"),
    pytest.param("1e999", "literal too large", id="inf-literal"),
    pytest.param("1e308 * 10", "overflow", id="float-overflow"),
    pytest.param("sqrt(-1)", "math domain error", id="sqrt-negative"),
    pytest.param("log(0)", "math domain error", id="log-zero"),
    pytest.param("log(-1, 10)", "math domain error", id="log-negative"),
    pytest.param("(-8) ** (1/3)", "math domain error", id="complex-result"),
    pytest.param("factorial(5)", "'factorial' is not allowed", id="factorial"),
    pytest.param("exp(1000)", "overflow", id="exp-overflow"),
    pytest.param("sin(10 ** 999)", "overflow", id="int-too-big-for-float"),
    pytest.param("pow(10, 10**6)", "exponent too large", id="pow-function"),
    pytest.param("pow(9, pow(9, 9))", "exponent too large", id="nested-pow-function"),
    pytest.param("pow(2)", "pow() takes 2 arguments (1 given)", id="pow-arity"),
    pytest.param("log(1, 2, 3)", "takes 1 or 2 arguments (3 given)", id="log-arity"),
    pytest.param("sqrt(x=4)", "keyword arguments", id="keyword-arg"),
    pytest.param("sqrt(*[4])", "starred", id="starred"),
    pytest.param("round(5, -5000)", "number of digits", id="round-huge-ndigits"),
    pytest.param("round(2.5, 0.5)", "must be an integer", id="round-float-ndigits"),
    pytest.param("math.sqrt(4)", "not math.sqrt", id="math-attribute"),
    pytest.param("abs(1)(2)", "direct calls", id="call-result"),
    pytest.param("2 ** -10001", "exponent too large", id="tiny-but-exponent-over-limit"),
    pytest.param("", "empty expression", id="empty"),
    pytest.param("   ", "empty expression", id="blank"),
    pytest.param("1 +", "invalid syntax", id="syntax"),
    pytest.param("import os", "invalid syntax", id="statement"),
    pytest.param("x = 1", "invalid syntax", id="assignment"),
    pytest.param("1; 2", "invalid syntax", id="two-statements"),
    pytest.param("1\x002", "invalid", id="nul-byte"),
]


@pytest.mark.parametrize(("expression", "message"), HOSTILE)
def test_hostile_input_is_refused_quickly(expression: str, message: str) -> None:
    started = time.perf_counter()
    outcome = calculate(expression)
    elapsed = time.perf_counter() - started

    assert outcome["success"] is False
    assert "result" not in outcome
    assert isinstance(outcome["error"], str)
    assert message in outcome["error"]
    assert elapsed < FAST_SECONDS, f"took {elapsed:.3f}s"


@pytest.mark.parametrize(("expression", "message"), HOSTILE)
def test_evaluate_raises_calculator_error(expression: str, message: str) -> None:
    with pytest.raises(CalculatorError) as excinfo:
        evaluate(expression)
    assert message in str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)


def test_nothing_is_executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    imports: list[str] = []
    commands: list[str] = []
    real_import = builtins.__import__

    def recording_import(name: str, *args: Any, **kwargs: Any) -> Any:
        imports.append(name)
        return real_import(name, *args, **kwargs)

    def recording_system(command: str) -> int:
        commands.append(command)
        return 0

    attacks = [
        f"__import__('os').system('touch {marker}')",
        f"open('{marker}', 'w')",
        f"(lambda: __import__('os').system('touch {marker}'))()",
        "[c for c in ().__class__.__base__.__subclasses__()]",
        f"__builtins__['open']('{marker}', 'w')",
    ]
    with monkeypatch.context() as patch:
        patch.setattr(builtins, "__import__", recording_import)
        patch.setattr(os, "system", recording_system)
        imports.clear()  # only record what happens while the attacks are evaluated
        outcomes = [calculate(attack) for attack in attacks]
        imports_during_attacks = list(imports)

    assert all(outcome["success"] is False for outcome in outcomes)
    assert imports_during_attacks == []
    assert commands == []
    assert not marker.exists()


# --------------------------------------------------------------------------------------------------
# Limits and their boundaries
# --------------------------------------------------------------------------------------------------


def test_nesting_depth_boundary() -> None:
    depth = MAX_NESTING_DEPTH
    assert evaluate("(" * depth + "1" + ")" * depth) == 1
    assert evaluate("-" * (depth - 1) + "1") == (-1) ** (depth - 1)
    assert "too deeply nested" in calculate("(" * (depth + 1) + "1" + ")" * (depth + 1))["error"]
    assert "too deeply nested" in calculate("-" * depth + "1")["error"]


def test_length_boundary() -> None:
    at_limit = "1" + " " * (MAX_EXPRESSION_LENGTH - 1)
    assert evaluate(at_limit) == 1
    assert "too long" in calculate(at_limit + " ")["error"]


def test_over_long_input_is_echoed_truncated() -> None:
    outcome = calculate("1+" * 50_000)
    assert outcome["success"] is False
    assert len(outcome["expression"]) < 300


def test_exponent_and_digit_limits() -> None:
    assert evaluate("10 ** 999") == 10**999  # 1000 digits: allowed
    assert evaluate("2 ** 3000") == 2**3000  # ~903 digits
    assert evaluate("(-1) ** 10000") == 1
    # Tiny results are allowed (exponent within the limit): IEEE underflow to zero.
    assert evaluate("2 ** -10000") == 0
    assert evaluate("2 ** -10") == 0.0009765625


def test_parser_recursion_failure_is_reported_as_too_deeply_nested(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def exploding_parse(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(calculator.ast, "parse", exploding_parse)
    assert calculate("1 + 1")["error"] == "expression too deeply nested"


def test_calculate_never_raises_on_non_string() -> None:
    outcome = calculate(None)  # type: ignore[arg-type]
    assert outcome == {
        "success": False,
        "expression": "",
        "error": "expression must be a string",
    }


def test_calculate_turns_unexpected_bugs_into_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(expression: str) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(calculator, "evaluate", broken)
    assert calculate("1 + 1") == {
        "success": False,
        "expression": "1 + 1",
        "error": "internal calculator error",
    }


# --------------------------------------------------------------------------------------------------
# The LangChain tool
# --------------------------------------------------------------------------------------------------


def test_tool_metadata() -> None:
    tool = make_calculator_tool()
    assert tool.name == "calculator"
    assert set(tool.args) == {"expression"}
    assert tool.args["expression"]["type"] == "string"
    assert tool.args["expression"].get("description")
    assert "sqrt" in tool.description


async def test_tool_ainvoke_returns_result_dict() -> None:
    tool = make_calculator_tool()
    outcome = await tool.ainvoke({"expression": "10 * 20"})
    assert outcome == {"success": True, "expression": "10 * 20", "result": 200}


async def test_tool_ainvoke_invalid_expression_returns_error_dict() -> None:
    tool = make_calculator_tool()
    outcome = await tool.ainvoke({"expression": "__import__('os').system('id')"})
    assert outcome["success"] is False
    assert outcome["error"]


def test_tool_invoke_sync() -> None:
    tool = make_calculator_tool()
    assert tool.invoke({"expression": "1/0"}) == {
        "success": False,
        "expression": "1/0",
        "error": "division by zero",
    }


async def test_tool_call_produces_tool_message_with_json_content() -> None:
    tool = make_calculator_tool()
    message = await tool.ainvoke(
        {"type": "tool_call", "name": "calculator", "args": {"expression": "2^10"}, "id": "c1"}
    )
    assert isinstance(message, ToolMessage)
    assert message.tool_call_id == "c1"
    assert json.loads(message.content) == {
        "success": True,
        "expression": "2**10",
        "result": 1024,
    }

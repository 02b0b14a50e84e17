"""Safe arithmetic evaluator and the ``calculator`` tool built on it.

Why this exists: LLMs are unreliable at arithmetic, so the agent gets a calculator tool. The
expression it evaluates is written by the model, and the model's output is steered by whatever
text reached its context (user messages, retrieved documents, tool results). It must therefore be
treated as hostile input. ``eval`` is never safe for that, not even with stripped ``__builtins__``
(``().__class__.__bases__[0].__subclasses__()`` and friends reach everything), and even "pure"
arithmetic such as ``9**9**9`` can pin a CPU core and exhaust memory.

So this module parses the expression with :mod:`ast` (parsing only; nothing is compiled to code
or executed) and interprets the tree itself:

* Only an explicit whitelist of node types is accepted; everything else is rejected by default
  (names other than ``pi``/``e``, attribute access, subscripts, calls to anything but the allowed
  math functions, keyword arguments, lambdas, comprehensions, f-strings, comparisons, boolean
  operators, conditional expressions, starred arguments, strings, booleans, complex numbers...).
* The work done is bounded: the input length is checked before parsing, then nesting depth and
  node count, and every power is size-estimated *before* it is computed. Intermediate integers are
  capped in size and floats must stay finite, so each operation is cheap and the number of
  operations is bounded.

Input normalisation (done before parsing): ``^`` is treated as power and rewritten to ``**``
(users and models write ``2^10`` meaning 1024; Python's XOR is not useful here), the
multiplication sign U+00D7 becomes ``*`` and the division sign U+00F7 becomes ``/``. Commas
only separate function arguments; there are no thousands separators.

Public API: :class:`CalculatorError`, :func:`evaluate`, :func:`calculate` and
:func:`make_calculator_tool`.
"""

from __future__ import annotations

import ast
import logging
import math
import operator
from collections.abc import Callable
from types import MappingProxyType
from typing import Any, Final, NamedTuple

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)

Number = int | float

# --------------------------------------------------------------------------------------------------
# Limits. Each one bounds the work an adversarial expression can cause; together they keep any
# evaluation in the sub-millisecond to low-millisecond range.
# --------------------------------------------------------------------------------------------------

MAX_EXPRESSION_LENGTH: Final = 1000
"""Maximum input length in characters, checked before anything else (even before normalising),
so a 100 KB string is refused in O(1) without being parsed. Real calculations are far shorter."""

MAX_NESTING_DEPTH: Final = 50
"""Maximum nesting depth, applied both to bracket nesting in the source text (parentheses leave no
trace in the AST, and CPython's parser itself fails at ~200 levels) and to the AST. In the AST,
the left operand of a binary operator counts as the same level as the operator, so flat chains
like ``1 + 2 + ... + 200`` are not "nested"; every other child (right operand, unary operand,
function argument) is one level deeper. The evaluator only recurses along the counted edges, so
this also bounds its Python recursion depth."""

MAX_NODES: Final = 500
"""Maximum number of AST nodes (numbers, operators, names, calls). Bounds the number of operations
independently of the character limit; allows flat sums of roughly 250 terms."""

MAX_EXPONENT: Final = 10_000
"""Largest absolute exponent accepted by ``**``/``^``/``pow()``. Checked before computing, so
``9**9**9`` and ``10**10**10`` are refused without attempting the power."""

MAX_RESULT_DIGITS: Final = 1000
"""Largest integer size (in decimal digits) allowed for any result or intermediate value, and the
largest estimated size of a power before it is computed. Also bounds ``round()``'s ``ndigits``
(rounding an int to ``-n`` digits computes ``10**n``). Keeps big-int arithmetic cheap."""

SIGNIFICANT_DIGITS: Final = 12
"""Float results are rounded to this many significant digits, hiding binary floating-point noise
(``0.1 + 0.2`` gives ``0.3``)."""

MAX_INTEGRAL_FLOAT: Final = 1e15
"""Integral float results below this magnitude are returned as ``int`` (``sqrt(16)`` gives ``4``);
beyond it, floats are no longer exact enough for that to be honest."""

_INT_LIMIT: Final = 10**MAX_RESULT_DIGITS  # smallest integer with MAX_RESULT_DIGITS + 1 digits

MAX_ECHO_LENGTH: Final = 200
"""Over-long input is echoed back truncated to this many characters (the tool's result goes into
the model's context, which must not receive a 100 KB echo)."""


class CalculatorError(ValueError):
    """The expression is invalid, unsupported, too large, or mathematically undefined.

    The message is human-readable and meant to be shown to the user or the model.
    """


# --------------------------------------------------------------------------------------------------
# Input normalisation
# --------------------------------------------------------------------------------------------------

_REPLACEMENTS: Final = (
    ("^", "**"),
    ("\N{MULTIPLICATION SIGN}", "*"),
    ("\N{DIVISION SIGN}", "/"),
)


def _normalize(expression: str) -> str:
    """Strip surrounding whitespace and rewrite ``^`` and the U+00D7/U+00F7 signs to operators."""
    for old, new in _REPLACEMENTS:
        expression = expression.replace(old, new)
    return expression.strip()


def _echo(expression: object) -> str:
    """The normalised expression as reported back by :func:`calculate`, bounded in size."""
    if not isinstance(expression, str):
        return ""
    if len(expression) > MAX_EXPRESSION_LENGTH:
        return expression[:MAX_ECHO_LENGTH].strip() + "…"
    return _normalize(expression)


# --------------------------------------------------------------------------------------------------
# Arithmetic primitives (each one bounded)
# --------------------------------------------------------------------------------------------------


def _check_number(value: object) -> Number:
    """Ensure an intermediate or final value is a finite real number of bounded size."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalculatorError("result is not a real number")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CalculatorError("number too large (overflow)")
    elif abs(value) >= _INT_LIMIT:
        raise CalculatorError(f"result too large (more than {MAX_RESULT_DIGITS} digits)")
    return value


def _power(base: Number, exponent: Number) -> Number:
    """``base ** exponent`` after estimating the result size, so huge powers are never computed."""
    if abs(exponent) > MAX_EXPONENT:
        raise CalculatorError(
            f"exponent too large (absolute value above {MAX_EXPONENT:,}); result would be too big"
        )
    if base != 0:
        estimated_digits = exponent * math.log10(abs(base))
        if estimated_digits > MAX_RESULT_DIGITS:
            raise CalculatorError(
                f"result too large (about {estimated_digits:,.0f} digits; "
                f"limit {MAX_RESULT_DIGITS:,})"
            )
    if base < 0 and isinstance(exponent, float) and not exponent.is_integer():
        raise CalculatorError("math domain error: negative number raised to a fractional power")
    return base**exponent


def _round(value: Number, ndigits: Number | None = None) -> Number:
    """``round()`` with ``ndigits`` validated (an integer of bounded size)."""
    if ndigits is None:
        return round(value)
    if isinstance(ndigits, float):
        if not ndigits.is_integer():
            raise CalculatorError("round(): the number of digits must be an integer")
        ndigits = int(ndigits)
    if abs(ndigits) > MAX_RESULT_DIGITS:
        raise CalculatorError(
            f"round(): the number of digits must be between {-MAX_RESULT_DIGITS} "
            f"and {MAX_RESULT_DIGITS}"
        )
    return round(value, ndigits)


class _Function(NamedTuple):
    impl: Callable[..., Number]
    min_args: int
    max_args: int


_FUNCTIONS: Final = MappingProxyType(
    {
        "sqrt": _Function(math.sqrt, 1, 1),
        "pow": _Function(_power, 2, 2),
        "sin": _Function(math.sin, 1, 1),
        "cos": _Function(math.cos, 1, 1),
        "tan": _Function(math.tan, 1, 1),
        "log": _Function(math.log, 1, 2),
        "log10": _Function(math.log10, 1, 1),
        "exp": _Function(math.exp, 1, 1),
        "abs": _Function(abs, 1, 1),
        "round": _Function(_round, 1, 2),
        "floor": _Function(math.floor, 1, 1),
        "ceil": _Function(math.ceil, 1, 1),
    }
)

_CONSTANTS: Final = MappingProxyType({"pi": math.pi, "e": math.e})

_BINARY_OPS: Final = MappingProxyType(
    {
        ast.Add: operator.add,
        ast.Sub: operator.sub,
        ast.Mult: operator.mul,
        ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv,
        ast.Mod: operator.mod,
        ast.Pow: _power,
    }
)

_UNARY_OPS: Final = MappingProxyType({ast.UAdd: operator.pos, ast.USub: operator.neg})

_OPERATOR_SYMBOLS: Final = MappingProxyType(
    {
        ast.MatMult: "@",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.BitOr: "|",
        ast.BitXor: "^",
        ast.BitAnd: "&",
        ast.Invert: "~",
        ast.Not: "not",
    }
)

_SYNTAX_NAMES: Final = MappingProxyType(
    {
        ast.Attribute: "attribute access",
        ast.Subscript: "indexing",
        ast.Slice: "slicing",
        ast.Lambda: "lambda",
        ast.ListComp: "comprehensions",
        ast.SetComp: "comprehensions",
        ast.DictComp: "comprehensions",
        ast.GeneratorExp: "generator expressions",
        ast.JoinedStr: "f-strings",
        ast.FormattedValue: "f-strings",
        ast.Compare: "comparisons",
        ast.BoolOp: "boolean operators",
        ast.IfExp: "conditional expressions",
        ast.Starred: "starred arguments",
        ast.NamedExpr: "assignment expressions",
        ast.List: "lists",
        ast.Tuple: "tuples",
        ast.Set: "sets",
        ast.Dict: "dicts",
        ast.Await: "await",
        ast.Yield: "yield",
        ast.YieldFrom: "yield",
    }
)

_ALLOWED_SUMMARY: Final = (
    "allowed: numbers, + - * / // % ** (or ^), parentheses, pi, e and the functions "
    + ", ".join(_FUNCTIONS)
)


# --------------------------------------------------------------------------------------------------
# Validation (iterative, whitelist-based)
# --------------------------------------------------------------------------------------------------


def _check_bracket_depth(expression: str) -> None:
    """Refuse deep bracket nesting from the text alone, before the parser sees it."""
    depth = 0
    for char in expression:
        if char in "([{":
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                raise CalculatorError(
                    f"expression too deeply nested (more than {MAX_NESTING_DEPTH} levels)"
                )
        elif char in ")]}":
            depth -= 1


def _unsupported(node: ast.AST) -> CalculatorError:
    what = _SYNTAX_NAMES.get(type(node), type(node).__name__)
    return CalculatorError(f"unsupported syntax: {what} ({_ALLOWED_SUMMARY})")


def _check_literal(value: object) -> None:
    if isinstance(value, bool):
        raise CalculatorError(f"booleans are not allowed ({_ALLOWED_SUMMARY})")
    if isinstance(value, str | bytes):
        raise CalculatorError(f"strings are not allowed ({_ALLOWED_SUMMARY})")
    if isinstance(value, complex):
        raise CalculatorError("complex numbers are not supported")
    if not isinstance(value, int | float):
        raise CalculatorError(f"unsupported literal {value!r} ({_ALLOWED_SUMMARY})")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("number literal too large")


def _check_call(node: ast.Call) -> None:
    if not isinstance(node.func, ast.Name):
        raise CalculatorError(
            "only direct calls of the allowed functions are supported "
            f"(write sqrt(4), not math.sqrt(4); {_ALLOWED_SUMMARY})"
        )
    name = node.func.id
    function = _FUNCTIONS.get(name)
    if function is None:
        raise CalculatorError(f"function {name!r} is not allowed ({_ALLOWED_SUMMARY})")
    if node.keywords:
        raise CalculatorError(f"{name}() does not accept keyword arguments")
    given = len(node.args)
    if not function.min_args <= given <= function.max_args:
        expected = (
            str(function.min_args)
            if function.min_args == function.max_args
            else f"{function.min_args} or {function.max_args}"
        )
        plural = "" if expected == "1" else "s"
        raise CalculatorError(f"{name}() takes {expected} argument{plural} ({given} given)")


def _children(node: ast.AST, depth: int) -> list[tuple[ast.AST, int]]:
    """Validate a single node and return its children with their nesting depth."""
    if isinstance(node, ast.Constant):
        _check_literal(node.value)
        return []
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return []
        if node.id in _FUNCTIONS:
            raise CalculatorError(f"{node.id!r} is a function; call it, e.g. {node.id}(x)")
        raise CalculatorError(f"unknown name {node.id!r} ({_ALLOWED_SUMMARY})")
    if isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY_OPS:
            symbol = _OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise CalculatorError(f"operator {symbol!r} is not supported ({_ALLOWED_SUMMARY})")
        return [(node.operand, depth + 1)]
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY_OPS:
            symbol = _OPERATOR_SYMBOLS.get(type(node.op), type(node.op).__name__)
            raise CalculatorError(f"operator {symbol!r} is not supported ({_ALLOWED_SUMMARY})")
        # Left operand: same level (flat chains like 1+2+3 are not nesting; see MAX_NESTING_DEPTH).
        return [(node.left, depth), (node.right, depth + 1)]
    if isinstance(node, ast.Call):
        _check_call(node)
        return [(arg, depth + 1) for arg in node.args]
    raise _unsupported(node)


def _validate(tree: ast.Expression) -> None:
    """Walk the tree without recursion, enforcing the whitelist and the size limits."""
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise CalculatorError(f"expression too long (more than {MAX_NODES} elements)")
        if depth > MAX_NESTING_DEPTH:
            raise CalculatorError(
                f"expression too deeply nested (more than {MAX_NESTING_DEPTH} levels)"
            )
        stack.extend(_children(node, depth))


# --------------------------------------------------------------------------------------------------
# Evaluation (runs only on validated trees)
# --------------------------------------------------------------------------------------------------


def _call(name: str, args: list[Number]) -> Number:
    try:
        return _FUNCTIONS[name].impl(*args)
    except ValueError as exc:
        if isinstance(exc, CalculatorError):
            raise
        shown = ", ".join(repr(arg) for arg in args)
        raise CalculatorError(f"math domain error: {name}({shown}) is undefined") from None


def _eval(node: ast.AST) -> Number:
    """Evaluate a validated node. Recursion depth is bounded by MAX_NESTING_DEPTH."""
    if isinstance(node, ast.Constant):
        return _check_number(node.value)
    if isinstance(node, ast.Name):
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp):
        return _check_number(_UNARY_OPS[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.BinOp):
        # Fold the left spine iteratively so flat chains do not recurse.
        pending: list[tuple[ast.operator, ast.expr]] = []
        current: ast.expr = node
        while isinstance(current, ast.BinOp):
            pending.append((current.op, current.right))
            current = current.left
        value = _eval(current)
        for op, right in reversed(pending):
            value = _check_number(_BINARY_OPS[type(op)](value, _eval(right)))
        return value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return _check_number(_call(node.func.id, [_eval(arg) for arg in node.args]))
    raise _unsupported(node)  # unreachable after _validate; kept as a safety net


def _present(value: Number) -> Number:
    """Make a result readable: round float noise away, show integral floats as ints."""
    if isinstance(value, int):
        return value
    value = float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if value.is_integer() and abs(value) < MAX_INTEGRAL_FLOAT:
        return int(value)
    return value


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def evaluate(expression: str) -> Number:
    """Evaluate an arithmetic expression safely.

    Returns an ``int`` when the result is exact (or an integral float below 1e15), otherwise a
    ``float`` rounded to 12 significant digits. Raises :class:`CalculatorError` with a
    human-readable message for anything invalid, unsupported, too large or undefined.
    """
    if not isinstance(expression, str):
        raise CalculatorError("expression must be a string")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CalculatorError(
            f"expression too long ({len(expression):,} characters; limit {MAX_EXPRESSION_LENGTH:,})"
        )
    source = _normalize(expression)
    if not source:
        raise CalculatorError("empty expression")
    if len(source) > MAX_EXPRESSION_LENGTH:  # '^' -> '**' can grow the text
        raise CalculatorError(f"expression too long (limit {MAX_EXPRESSION_LENGTH:,} characters)")
    _check_bracket_depth(source)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        message = exc.msg if exc.msg.startswith("invalid syntax") else f"invalid syntax: {exc.msg}"
        raise CalculatorError(message) from None
    except (RecursionError, MemoryError):
        raise CalculatorError("expression too deeply nested") from None
    except ValueError:  # e.g. NUL bytes in the source
        raise CalculatorError("invalid characters in expression") from None
    _validate(tree)
    try:
        value = _eval(tree.body)
    except CalculatorError:
        raise
    except ZeroDivisionError:
        raise CalculatorError("division by zero") from None
    except OverflowError:
        raise CalculatorError("number too large (overflow)") from None
    except (RecursionError, MemoryError):
        raise CalculatorError("expression too complex") from None
    except (ValueError, TypeError) as exc:
        raise CalculatorError(f"invalid operation: {exc}") from None
    return _present(value)


def calculate(expression: str) -> dict[str, Any]:
    """Evaluate ``expression`` and report the outcome as a dict; never raises.

    Success: ``{"success": True, "expression": <normalised input>, "result": <number>}``.
    Failure: ``{"success": False, "expression": <normalised input>, "error": <message>}``.
    Over-long input is echoed truncated.
    """
    shown = _echo(expression)
    try:
        result = evaluate(expression)
    except CalculatorError as exc:
        return {"success": False, "expression": shown, "error": str(exc)}
    except Exception:  # a bug, not bad input; the contract is still "never raises"
        logger.exception("calculator failed unexpectedly")
        return {"success": False, "expression": shown, "error": "internal calculator error"}
    return {"success": True, "expression": shown, "result": result}


class CalculatorInput(BaseModel):
    """Arguments of the ``calculator`` tool."""

    expression: str = Field(
        description=(
            "Arithmetic expression to evaluate, e.g. '(3 + 4) * 2', '2^10', 'sqrt(16) + 1', "
            "'log(8, 2)', 'round(pi * 2.5^2, 2)'."
        )
    )


CALCULATOR_DESCRIPTION: Final = (
    "Evaluate an arithmetic expression accurately. Use it for any calculation instead of "
    "doing arithmetic yourself. Supports numbers, + - * / // (floor division) % (modulo) "
    "** or ^ (power), parentheses, the constants pi and e, and the functions sqrt(x), pow(x, y), "
    "sin(x), cos(x), tan(x) (radians), log(x) (natural) or log(x, base), log10(x), exp(x), "
    "abs(x), round(x) or round(x, ndigits), floor(x), ceil(x). No variables, comparisons or "
    "other functions. Returns {success, expression, result} or {success: false, error}."
)


def _calculator_sync(expression: str) -> dict[str, Any]:
    return calculate(expression)


async def _calculator_async(expression: str) -> dict[str, Any]:
    # Pure, tiny and bounded CPU work: no need to offload to a thread.
    return calculate(expression)


def make_calculator_tool() -> BaseTool:
    """Build the ``calculator`` LangChain tool; it returns :func:`calculate`'s dict."""
    return StructuredTool.from_function(
        func=_calculator_sync,
        coroutine=_calculator_async,
        name="calculator",
        description=CALCULATOR_DESCRIPTION,
        args_schema=CalculatorInput,
    )

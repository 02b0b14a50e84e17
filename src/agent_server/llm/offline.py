"""A deterministic, network-free chat model: the default when no LLM provider is configured.

The offline model lets the whole product (graph, tools, streaming API, persistence, usage
accounting) run end to end with no API key and no network, and gives tests a model whose
output is fully predictable. It is *not* a language model: it recognises a handful of
phrasings with regular expressions, calls the matching tool (calculator, weather, search)
when that tool is bound, and turns tool results back into a plain-English answer.

Everything that decides *what* to say is a small pure function (`detect_intent`,
`answer_from_tool_results`, `plan_reply`, ...), so it can be tested without the LangChain
machinery; `OfflineChatModel` only wraps the plan in LangChain messages, chunks and usage.

Regular expressions and user text: every pattern that reads the user's message is compiled
with RE2 (`google-re2`), whose matching time is linear in the input whatever the pattern, so
no phrasing rule can backtrack catastrophically (issue 16: a Python `re` trailer pattern took
20 s on "weather in a , , , , , , , , , , , , ,b" and froze the event loop). Only messages of
at most `MAX_CLASSIFIED_CHARS` characters are classified at all. The two Python `re` patterns
left (`TOKEN_RE`, `_WORD_RUN_RE`) run over whole conversations, where RE2's Python wrapper
costs ~30x more per match; each is one alternation of single character-class runs that
cannot backtrack, and `tests/unit/test_regex_safety.py` times every pattern of the package
on adversarial input.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import re2
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolCall,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

__all__ = [
    "INTRO",
    "MODEL_ID",
    "Intent",
    "OfflineChatModel",
    "Reply",
    "ToolName",
    "answer_from_tool_results",
    "count_tokens",
    "describe_tool_result",
    "detect_intent",
    "plan_reply",
    "split_stream_chunks",
]

MODEL_ID = "offline"
"""Model id under which the registry exposes this model."""

ToolName = Literal["calculator", "weather", "search"]

# Argument name each tool expects, matching the project's tool signatures:
# calculator(expression), weather(location), search(query).
_DEFAULT_ARG: Mapping[ToolName, str] = {
    "calculator": "expression",
    "weather": "location",
    "search": "query",
}

# ---------------------------------------------------------------------------------------------
# Token counting
# ---------------------------------------------------------------------------------------------

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
"""One token per run of word characters or per single punctuation/symbol character.

Real tokenizers are model specific; this rule is simple, documented and reproducible, so
usage numbers from the offline model are honest (they grow with the text) and testable.
"""

_WORD_RUN_RE = re.compile(r"\S+")
"""A run of non-space characters: linear under Python `re` (no nested or adjacent quantifiers).

`split_stream_chunks` used ``\\s*\\S+`` and ``\\s+$``, which are quadratic on a long run of
spaces (every start position rescans the run); this one pattern plus slicing is not.
"""


def _rx(pattern: str) -> Any:
    """Compile ``pattern`` with RE2, case-insensitively: linear-time matching on user text.

    RE2 has no backreferences or look-around, which is why every pattern it compiles runs
    in time linear in the input; its ``\\b``, ``\\w``, ``\\d`` and ``\\s`` are ASCII only
    (use ``\\p{L}`` and friends for other scripts).
    """
    return re2.compile("(?i)" + pattern)


def count_tokens(text: str) -> int:
    """Count tokens in ``text`` with `TOKEN_RE` (word runs + punctuation characters)."""
    return len(TOKEN_RE.findall(text))


def split_stream_chunks(text: str) -> list[str]:
    """Split ``text`` into one-word stream chunks that each carry their leading whitespace.

    Joining the result always gives back ``text`` exactly (trailing whitespace, if any, is
    appended to the last chunk), which is what lets streamed and non-streamed answers match.
    """
    chunks: list[str] = []
    start = 0
    for match in _WORD_RUN_RE.finditer(text):
        chunks.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        if chunks:
            chunks[-1] += text[start:]
        else:
            chunks = [text[start:]]
    return chunks


# ---------------------------------------------------------------------------------------------
# Message helpers
# ---------------------------------------------------------------------------------------------


def _content_text(content: str | list[str | dict[str, Any]]) -> str:
    """Return the text of message content, which may be a string or a list of blocks.

    Only text blocks count: images, tool-use blocks etc. carry no words the offline model
    could react to.
    """
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            text = block.get("text")
            if isinstance(text, str):
                parts.append(text)
    return "\n".join(parts)


def _args_json(args: Mapping[str, Any]) -> str:
    """Serialise tool-call arguments the same way everywhere (ids, usage, stream chunks)."""
    return json.dumps(args, ensure_ascii=False)


def _count_input_tokens(messages: Sequence[BaseMessage]) -> int:
    """Input usage: every message's text, tool-call argument JSON and tool result text."""
    total = 0
    for message in messages:
        total += count_tokens(_content_text(message.content))
        if isinstance(message, AIMessage):
            for call in message.tool_calls:
                total += count_tokens(_args_json(call["args"]))
    return total


# ---------------------------------------------------------------------------------------------
# Intent detection
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Intent:
    """A tool the user's message asks for, with the tool's single argument value."""

    tool: ToolName
    value: str

    @property
    def args(self) -> dict[str, str]:
        """Arguments under the tool's default parameter name, e.g. ``{"query": "x"}``."""
        return {_DEFAULT_ARG[self.tool]: self.value}


# Polite lead-ins that carry no meaning for routing ("please", "can you", "hey, ...").
_POLITE_PREFIX_RE = _rx(
    r"^\s*(?:(?:please|hey|hi|hello|ok|okay|so)\b[\s,!.]*)*"
    r"(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?)?(?:please\s+)?"
)

MAX_CLASSIFIED_CHARS = 1000
"""Longer messages are not classified: the rules are for short requests.

1000 is the calculator's own input limit (`MAX_EXPRESSION_LENGTH`), and every phrasing the
rules know is far shorter; the bound keeps the per-message work of intent detection small
and fixed however large the message (up to 32,000 characters) is.
"""

_TOO_LONG_NOTE = (
    f"Your message is longer than the {MAX_CLASSIFIED_CHARS} characters my rules read, "
    "so I did not look for a request in it."
)


def _strip_trailer(text: str, chars: str, words: Sequence[str]) -> str:
    """Drop trailing ``chars`` and whole trailing ``words`` (lower case), repeatedly.

    Written by hand, not as a regex: ``(?:[\\s?.!]+|\\s+please)+$`` was the pattern that
    backtracked exponentially. Each round removes at least one character and looks only at
    the end of the text, so this is linear. ``words`` may hold phrases ("right now"); the
    text's whitespace is normalised first so they match however they are spaced.
    """
    text = " ".join(text.split())
    while True:
        text = text.rstrip(chars)
        for word in words:
            size = len(word)
            ends_with_word = len(text) >= size and text[-size:].lower() == word
            if ends_with_word and (len(text) == size or text[-size - 1] == " "):
                text = text[:-size]
                break
        else:
            return text


# --- weather -------------------------------------------------------------------------------

_WEATHER_RES: tuple[Any, ...] = (
    # "weather in Seoul", "What's the weather like in Paris today?", "temperature in New York",
    # "forecast for Tokyo", "weather forecast for Rome tomorrow"
    _rx(
        r"\b(?:weather|temperature|forecast|temp)\b"
        r"(?:\s+(?:like|forecast|report|conditions))?"
        r"(?:\s+(?:for\s+)?(?:today|tonight|tomorrow|now|right\s+now|currently))?"
        r"\s+(?:in|for|at)\s+(?P<location>[^\n?!]+)"
    ),
    # "how hot is it in Cairo", "how cold is it today in Oslo"
    _rx(
        r"\bhow\s+(?:hot|cold|warm|chilly|humid|windy|sunny|rainy)\s+is\s+it"
        r"(?:\s+(?:today|tonight|tomorrow|now|right\s+now|currently))?"
        r"\s+(?:in|at)\s+(?P<location>[^\n?!]+)"
    ),
    # "is it raining in London"
    _rx(
        r"\bis\s+it\s+(?:raining|snowing|sunny|cloudy|windy|cold|hot|warm)"
        r"(?:\s+(?:today|tonight|tomorrow|now|right\s+now|currently))?"
        r"\s+(?:in|at)\s+(?P<location>[^\n?!]+)"
    ),
)

# Words after the place name that are about time or politeness, not about the place.
_LOCATION_TRAILER_CHARS = " ,;:.!?"
_LOCATION_TRAILER_WORDS = (
    "today",
    "tonight",
    "tomorrow",
    "right now",
    "now",
    "currently",
    "please",
    "at the moment",
    "this morning",
    "this afternoon",
    "this evening",
    "this week",
    "this weekend",
)


def _clean_location(raw: str) -> str:
    location = _strip_trailer(raw, _LOCATION_TRAILER_CHARS, _LOCATION_TRAILER_WORDS)
    return location.strip(" \"'")


def _detect_weather(text: str) -> Intent | None:
    for pattern in _WEATHER_RES:
        match = pattern.search(text)
        if match:
            location = _clean_location(match.group("location"))
            if location and any(ch.isalpha() for ch in location):
                return Intent("weather", location)
    return None


# --- arithmetic ----------------------------------------------------------------------------

_ARITH_VERB_RE = _rx(
    r"^(?:calculate|compute|evaluate|solve|what\s+is|what'?s|what\x{2019}s|how\s+much\s+is)\b"
    r"(?:\s+(?:the\s+)?(?:result|value|answer)\s+of\b)?\s*:?\s*"
)
_ARITH_TRAILER_CHARS = " ?.!="
_ARITH_TRAILER_WORDS = ("please",)

# Spelled-out operators, replaced in place so the user's spacing is kept ("2 plus 3" -> "2 + 3").
# One alternation (longest phrases first) and a lookup, so a message costs one RE2 call.
_WORD_OPERATORS: Mapping[str, str] = {
    "multiplied by": "*",
    "divided by": "/",
    "to the power of": "^",
    "times": "*",
    "plus": "+",
    "minus": "-",
    "over": "/",
    "modulo": "%",
    "mod": "%",
}
_WORD_OPERATOR_RE = _rx(
    r"\b(?:multiplied\s+by|divided\s+by|to\s+the\s+power\s+of|times|plus|minus|over"
    r"|modulo|mod)\b"
)
# The calculator tool is only guaranteed to understand ASCII operators.
_UNICODE_OPERATORS = str.maketrans({"\u00d7": "*", "\u00f7": "/"})  # multiply, divide signs

# What an expression may be made of (numbers, names, operators, parentheses, commas): one
# RE2 call checks the whole text; the tokens are then cut with str methods, because the RE2
# wrapper costs ~10 us per match and this runs on the first model call of every turn.
_ARITH_SHAPE_RE = _rx(r"(?:\s+|\d+(?:\.\d*)?|\.\d+|[A-Za-z_]\w*|[-+*/%^(),\x{00d7}\x{00f7}])*")
_ARITH_SPLIT = str.maketrans({c: f" {c} " for c in "+-*/%^(),\u00d7\u00f7"})
_ARITH_FUNCTIONS = frozenset(
    {"sqrt", "pow", "sin", "cos", "tan", "log", "log10", "exp", "abs", "round", "floor", "ceil"}
)
_ARITH_CONSTANTS = frozenset({"pi", "e"})
_ARITH_OPERATORS = frozenset("+-*/%^\u00d7\u00f7")


def _is_arithmetic(expression: str) -> bool:
    """True if ``expression`` is a calculator expression, not just a number or prose.

    Every token must be a number, an operator, a parenthesis/comma, a known function or a
    known constant; there must be a number or constant, and an operator or function call
    (so a bare "42" is not arithmetic and "what is 42" goes to search instead).
    """
    if not _ARITH_SHAPE_RE.fullmatch(expression):
        return False
    tokens = expression.lower().translate(_ARITH_SPLIT).split()
    for token in tokens:
        if token[0].isdigit() or token[0] == ".":
            if not token.replace(".", "").isdigit():  # "2pi" is a number glued to a name
                return False
        elif (
            token not in _ARITH_OPERATORS
            and token not in "(),"
            and token not in (_ARITH_FUNCTIONS | _ARITH_CONSTANTS)
        ):
            return False

    has_operand = any(t[0].isdigit() or t[0] == "." or t in _ARITH_CONSTANTS for t in tokens)
    has_operator = any(t in _ARITH_OPERATORS for t in tokens)
    has_call = any(
        t in _ARITH_FUNCTIONS and i + 1 < len(tokens) and tokens[i + 1] == "("
        for i, t in enumerate(tokens)
    )
    return has_operand and (has_operator or has_call)


def _arithmetic_expression(text: str) -> str | None:
    """Return the calculator expression in ``text`` (verb and trailing ?/. removed), if any."""
    verb = _ARITH_VERB_RE.match(text)
    rest = text[verb.end() :] if verb else text
    rest = _strip_trailer(rest, _ARITH_TRAILER_CHARS, _ARITH_TRAILER_WORDS).strip()
    rest = _WORD_OPERATOR_RE.sub(
        lambda match: _WORD_OPERATORS[" ".join(match.group().lower().split())], rest
    )
    if not rest or not _is_arithmetic(rest):
        return None
    return rest.translate(_UNICODE_OPERATORS)


# --- search --------------------------------------------------------------------------------

_SEARCH_RE = _rx(
    r"(?s)^(?:search\s+(?:in\s+)?the\s+knowledge\s*base\s+(?:for|about)"
    r"|search(?:\s+(?:for|about|on))?"
    r"|look\s+up|lookup"
    r"|find\s+(?:me\s+)?(?:some\s+)?(?:information|info|docs|documents|documentation)"
    r"\s+(?:about|on|for|regarding)"
    r"|what\s+do\s+you\s+know\s+about"
    r"|tell\s+me\s+(?:more\s+)?about"
    r"|who\s+is|who'?s|who\x{2019}s|who\s+are"
    r"|what\s+is|what'?s|what\x{2019}s|what\s+are)"
    r"\s*:?\s+(?P<query>.+)$"
)
_QUERY_TRAILER_CHARS = " ?.!"
_QUERY_TRAILER_WORDS = ("please",)
_QUOTES = "\"'`\u201c\u201d\u2018\u2019"  # straight, back and curly quotes
# "what's the weather?" with no place is not a knowledge-base question.
_WEATHER_ONLY_RE = _rx(r"^(?:the\s+)?(?:weather|temperature|forecast)\b")


def _search_query(text: str) -> str | None:
    match = _SEARCH_RE.match(text)
    if not match:
        return None
    query = _strip_trailer(match.group("query"), _QUERY_TRAILER_CHARS, _QUERY_TRAILER_WORDS)
    query = query.strip(_QUOTES).strip()
    query = query.strip()
    if not query or _WEATHER_ONLY_RE.match(query):
        return None
    return query


def detect_intent(text: str) -> Intent | None:
    """Decide which tool, if any, a user message asks for.

    Order matters and mirrors specificity: weather phrasings are unambiguous, arithmetic
    must be checked before search because "what is 2 + 2" also looks like a search, and
    search is the catch-all for "what is X" / "tell me about X".
    """
    text = text.strip()
    if not text or len(text) > MAX_CLASSIFIED_CHARS:
        return None
    weather = _detect_weather(text)
    if weather:
        return weather
    polite = _POLITE_PREFIX_RE.match(text)
    body = (text[polite.end() :] if polite else text).strip()
    expression = _arithmetic_expression(body)
    if expression:
        return Intent("calculator", expression)
    query = _search_query(body)
    if query:
        return Intent("search", query)
    return None


# ---------------------------------------------------------------------------------------------
# Answers from tool results
# ---------------------------------------------------------------------------------------------

_RAW_LIMIT = 500
_SNIPPET_LIMIT = 300
_MAX_SEARCH_RESULTS = 5


def _truncate(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _fmt_value(value: Any) -> str:
    """Render a JSON value for prose: integral floats lose their ".0" (``200.0`` -> ``200``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else str(value)


def _fmt_error(error: Any) -> str:
    return str(error).strip().rstrip(".") if error is not None else "unknown error"


def _calculator_answer(data: Mapping[str, Any], args: Mapping[str, Any]) -> str | None:
    expression = data.get("expression", args.get("expression", "the expression"))
    if data.get("success") is False:
        return f"I couldn't calculate {expression}: {_fmt_error(data.get('error'))}."
    if "result" not in data:
        return None
    return f"{expression} = {_fmt_value(data['result'])}"


def _weather_answer(data: Mapping[str, Any], args: Mapping[str, Any]) -> str | None:
    location = data.get("location", args.get("location", "that location"))
    if data.get("success") is False:
        return f"I couldn't get the weather for {location}: {_fmt_error(data.get('error'))}."
    parts: list[str] = []
    if data.get("conditions"):
        parts.append(str(data["conditions"]))
    if data.get("temperature_c") is not None:
        temperature = f"{_fmt_value(data['temperature_c'])} °C"
        if data.get("feels_like_c") is not None:
            temperature += f" (feels like {_fmt_value(data['feels_like_c'])} °C)"
        parts.append(temperature)
    if data.get("humidity_pct") is not None:
        parts.append(f"humidity {_fmt_value(data['humidity_pct'])}%")
    if data.get("wind_speed_kmh") is not None:
        parts.append(f"wind {_fmt_value(data['wind_speed_kmh'])} km/h")
    if not parts:
        return None
    return f"The weather in {location}: {', '.join(parts)}."


def _search_answer(data: Mapping[str, Any], args: Mapping[str, Any]) -> str | None:
    if data.get("success") is False:
        return f"I couldn't search the knowledge base: {_fmt_error(data.get('error'))}."
    query = data.get("query", args.get("query", ""))
    results = data.get("results")
    if not isinstance(results, list):
        return None
    if not results:
        return f'I found nothing in the knowledge base for "{query}".'
    lines = [f'Here is what I found for "{query}":']
    for result in results[:_MAX_SEARCH_RESULTS]:
        if not isinstance(result, Mapping):
            continue
        title = str(result.get("title") or "Untitled")
        snippet = _truncate(" ".join(str(result.get("snippet") or "").split()), _SNIPPET_LIMIT)
        line = f"- {title}: {snippet}" if snippet else f"- {title}"
        if result.get("document_id") is not None:
            line += f" [doc {result['document_id']}]"
        lines.append(line)
    return "\n".join(lines)


_RESULT_FORMATTERS: Mapping[str, Callable[[Mapping[str, Any], Mapping[str, Any]], str | None]] = {
    "calculator": _calculator_answer,
    "weather": _weather_answer,
    "search": _search_answer,
}


def describe_tool_result(
    name: str,
    content: str,
    *,
    status: str = "success",
    args: Mapping[str, Any] | None = None,
) -> str:
    """Turn one tool result into a sentence for the user.

    Known tools return JSON and get a tailored sentence; anything else (unknown tool,
    non-JSON text, unexpected shape) is reported verbatim but truncated, so the user
    always sees what happened rather than a made-up answer.
    """
    args = args or {}
    data: Any = None
    try:
        data = json.loads(content)
    except (TypeError, ValueError):
        data = None
    formatter = _RESULT_FORMATTERS.get(name)
    if formatter and isinstance(data, Mapping):
        answer = formatter(data, args)
        if answer:
            return answer
    if status == "error":
        return f"The {name} tool failed: {_truncate(content, _RAW_LIMIT)}"
    return f"{name} returned: {_truncate(content, _RAW_LIMIT)}"


def _trailing_tool_messages(
    messages: Sequence[BaseMessage],
) -> tuple[AIMessage | None, list[ToolMessage]]:
    """Split off the ToolMessages that end the conversation and the AIMessage they answer."""
    results: list[ToolMessage] = []
    index = len(messages) - 1
    while index >= 0 and isinstance(messages[index], ToolMessage):
        results.append(messages[index])  # type: ignore[arg-type]
        index -= 1
    results.reverse()
    caller = messages[index] if index >= 0 and isinstance(messages[index], AIMessage) else None
    return caller, results


def answer_from_tool_results(caller: AIMessage | None, results: Sequence[ToolMessage]) -> str:
    """Answer with one paragraph per tool result, in the order the tools were called.

    Results are matched to the caller's tool calls by ``tool_call_id`` (tools may finish in
    any order); results with no matching call are appended in message order.
    """
    calls = {call["id"]: call for call in caller.tool_calls} if caller else {}
    by_id = {result.tool_call_id: result for result in results}
    ordered: list[ToolMessage] = [by_id[cid] for cid in calls if cid in by_id]
    ordered += [result for result in results if result.tool_call_id not in calls]

    paragraphs = []
    for result in ordered:
        call = calls.get(result.tool_call_id)
        name = result.name or (call["name"] if call else "tool")
        paragraphs.append(
            describe_tool_result(
                name,
                _content_text(result.content),
                status=result.status,
                args=call["args"] if call else None,
            )
        )
    return "\n".join(paragraphs)


# ---------------------------------------------------------------------------------------------
# Planning a reply
# ---------------------------------------------------------------------------------------------

_GREETING_RE = _rx(
    r"^\s*(?:hi|hello|hey|hiya|howdy|greetings|yo|good\s+(?:morning|afternoon|evening|day))\b"
)

_TOOL_LABELS: Mapping[ToolName, str] = {
    "calculator": "the calculator",
    "weather": "the weather tool",
    "search": "the knowledge-base search",
}

INTRO = (
    "I'm agent-server's offline model: no LLM provider is configured, so I answer with "
    "simple built-in rules instead of a real language model. I can do arithmetic with the "
    "calculator, look up the weather and search the knowledge base. Try 'Calculate 10 * 20', "
    "'weather in Seoul' or 'search for LangGraph'."
)


@dataclass(frozen=True, slots=True)
class Reply:
    """What the model decided to say: text, or tool calls (never both)."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def finish_reason(self) -> Literal["stop", "tool_calls"]:
        return "tool_calls" if self.tool_calls else "stop"


def _bound_tools(tools: Sequence[Mapping[str, Any]] | None) -> dict[str, Mapping[str, Any]]:
    """Map bound tool name -> JSON-schema parameters, from OpenAI-format tool dicts."""
    bound: dict[str, Mapping[str, Any]] = {}
    for spec in tools or ():
        function = spec.get("function", spec)
        name = function.get("name") if isinstance(function, Mapping) else None
        if isinstance(name, str):
            parameters = function.get("parameters") or function.get("input_schema") or {}
            bound[name] = parameters if isinstance(parameters, Mapping) else {}
    return bound


def _argument_name(tool: ToolName, parameters: Mapping[str, Any]) -> str:
    """Use the tool's default parameter name unless the bound schema has one other name."""
    properties = parameters.get("properties")
    default = _DEFAULT_ARG[tool]
    if isinstance(properties, Mapping) and default not in properties and len(properties) == 1:
        return str(next(iter(properties)))
    return default


def _tool_call_id(position: int, index: int, name: str, args_json: str) -> str:
    """Deterministic id, unique per position in the conversation (like provider ids)."""
    digest = hashlib.sha1(f"{position}:{index}:{name}:{args_json}".encode()).hexdigest()
    return f"call_{digest[:16]}"


def _last_human_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return _content_text(message.content)
    return ""


def plan_reply(
    messages: Sequence[BaseMessage],
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    tool_choice: Any = None,
) -> Reply:
    """Decide the whole reply from the conversation and the bound tools (pure function).

    1. Trailing tool results -> a final answer stating them.
    2. A tool intent in the last user message and that tool bound -> one tool call.
    3. Otherwise a short self-description, saying why a recognised request can't be run.
    """
    caller, results = _trailing_tool_messages(messages)
    if results:
        return Reply(text=answer_from_tool_results(caller, results))

    text = _last_human_text(messages)
    bound = {} if tool_choice == "none" else _bound_tools(tools)
    intent = detect_intent(text)

    if intent and intent.tool in bound:
        key = _argument_name(intent.tool, bound[intent.tool])
        args = {key: intent.value}
        call_id = _tool_call_id(len(messages), 0, intent.tool, _args_json(args))
        return Reply(tool_calls=(tool_call(name=intent.tool, args=args, id=call_id),))

    parts: list[str] = []
    if len(text.strip()) > MAX_CLASSIFIED_CHARS:
        parts.append(_TOO_LONG_NOTE)
    elif _GREETING_RE.match(text):
        parts.append("Hello!")
    if intent and not bound:
        parts.append(
            f"Tools are disabled for this request, so I can't run {_TOOL_LABELS[intent.tool]}."
        )
    elif intent:
        parts.append(
            f"{_TOOL_LABELS[intent.tool].capitalize()} is not available for this request, "
            "so I can't run it."
        )
    parts.append(INTRO)
    return Reply(text=" ".join(parts))


_INLINE_PLAN_CHARS = 16_000
"""Conversations with more text than this are planned in a worker thread.

Planning is linear in the conversation's text (token counting reads every message; intent
detection reads at most `MAX_CLASSIFIED_CHARS`): about 2 ms per 16,000 characters here,
while `asyncio.to_thread` costs about 0.2 ms. So the usual short conversation is planned
inline (the offline model is on the hot path of every benchmark), and only a long one, up to
`history_window` messages of 32,000 characters each, is moved off the event loop.
"""


def _conversation_chars(messages: Sequence[BaseMessage]) -> int:
    total = 0
    for message in messages:
        content = message.content
        if isinstance(content, str):
            total += len(content)
        else:
            total += sum(len(str(block)) for block in content)
        if isinstance(message, AIMessage):
            total += sum(len(str(call["args"])) for call in message.tool_calls)
    return total


def _apply_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut ``text`` at the earliest stop sequence, as providers do."""
    if not stop:
        return text
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]


# ---------------------------------------------------------------------------------------------
# The chat model
# ---------------------------------------------------------------------------------------------


class OfflineChatModel(BaseChatModel):
    """Deterministic rule-based chat model (model id ``"offline"``); needs no network.

    Supports ``bind_tools`` (OpenAI tool format), sync/async invoke and token-by-token
    streaming, and reports `usage_metadata` counted with `count_tokens`.
    """

    model_name: str = MODEL_ID
    """Reported in ``response_metadata["model_name"]``."""

    stream_delay_s: float = Field(default=0.0, ge=0.0)
    """Pause between streamed chunks in async streaming, to make demos look like a real LLM."""

    @property
    def _llm_type(self) -> str:
        return "offline"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def bind_tools(  # type: ignore[override]
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools in OpenAI format; ``tool_choice="none"`` disables tool calls."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    # -- shared core ---------------------------------------------------------------------

    def _plan(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> tuple[Reply, UsageMetadata]:
        reply = plan_reply(messages, kwargs.get("tools"), tool_choice=kwargs.get("tool_choice"))
        if stop and reply.text:
            reply = Reply(text=_apply_stop(reply.text, stop), tool_calls=reply.tool_calls)
        input_tokens = _count_input_tokens(messages)
        output_tokens = count_tokens(reply.text) + sum(
            count_tokens(_args_json(call["args"])) for call in reply.tool_calls
        )
        usage = UsageMetadata(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        )
        return reply, usage

    def _response_metadata(self, reply: Reply) -> dict[str, Any]:
        return {"model_name": self.model_name, "finish_reason": reply.finish_reason}

    def _result(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> ChatResult:
        reply, usage = self._plan(messages, stop, kwargs)
        message = AIMessage(
            content=reply.text,
            tool_calls=list(reply.tool_calls),
            usage_metadata=usage,
            response_metadata=self._response_metadata(reply),
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _chunks(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> list[ChatGenerationChunk]:
        """All stream chunks: one per word, then one per tool call; usage on the last only."""
        reply, usage = self._plan(messages, stop, kwargs)
        chunks = [AIMessageChunk(content=piece) for piece in split_stream_chunks(reply.text)]
        chunks += [
            AIMessageChunk(
                content="",
                tool_call_chunks=[
                    tool_call_chunk(
                        name=call["name"],
                        args=_args_json(call["args"]),
                        id=call["id"],
                        index=index,
                    )
                ],
            )
            for index, call in enumerate(reply.tool_calls)
        ]
        if not chunks:
            chunks = [AIMessageChunk(content="")]
        last = chunks[-1]
        chunks[-1] = AIMessageChunk(
            content=last.content,
            tool_call_chunks=last.tool_call_chunks,
            usage_metadata=usage,
            response_metadata=self._response_metadata(reply),
            chunk_position="last",
        )
        return [ChatGenerationChunk(message=chunk) for chunk in chunks]

    # -- BaseChatModel hooks ---------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._result(messages, stop, kwargs)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if _conversation_chars(messages) > _INLINE_PLAN_CHARS:
            return await asyncio.to_thread(self._result, messages, stop, kwargs)
        return self._result(messages, stop, kwargs)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # BaseChatModel forwards each chunk to run_manager.on_llm_new_token itself.
        yield from self._chunks(messages, stop, kwargs)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if _conversation_chars(messages) > _INLINE_PLAN_CHARS:
            chunks = await asyncio.to_thread(self._chunks, messages, stop, kwargs)
        else:
            chunks = self._chunks(messages, stop, kwargs)
        for position, chunk in enumerate(chunks):
            if position:
                # Yield control between tokens so streaming is interleaved and cancellable.
                await asyncio.sleep(self.stream_delay_s)
            yield chunk

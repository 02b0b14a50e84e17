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

from agent_server.tools import units

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

ToolName = Literal["calculator", "weather", "search", "units"]

# Argument name each tool expects, matching the project's tool signatures:
# calculator(expression), weather(location), search(query), units(value, from_unit, to_unit).
_DEFAULT_ARG: Mapping[ToolName, str] = {
    "calculator": "expression",
    "weather": "location",
    "search": "query",
    "units": "value",
}

Language = Literal["en", "ko"]
"""The languages the rules understand and answer in."""

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
    """A tool the user's message asks for, with the tool's main argument value (and, for
    tools with several parameters, the others as ``extra`` name/value pairs)."""

    tool: ToolName
    value: Any
    extra: tuple[tuple[str, Any], ...] = ()

    @property
    def args(self) -> dict[str, Any]:
        """Arguments under the tool's default parameter name, e.g. ``{"query": "x"}``."""
        return {_DEFAULT_ARG[self.tool]: self.value, **dict(self.extra)}


def _is_hangul(ch: str) -> bool:
    return "\uac00" <= ch <= "\ud7a3" or "\u1100" <= ch <= "\u11ff" or "\u3131" <= ch <= "\u318e"


def detect_language(text: str) -> Language:
    """Korean if the text has any Hangul (in its first `MAX_CLASSIFIED_CHARS`), else English.

    Mixed messages ("fallback이 뭐야?") are Korean: the Hangul carries the sentence.
    """
    if text.isascii():
        return "en"
    return "ko" if any(_is_hangul(ch) for ch in text[:MAX_CLASSIFIED_CHARS]) else "en"


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


# "서울 날씨 어때?", "오늘 부산의 기온은?", "내일 제주도 날씨 알려줘": the place comes first.
_KO_WEATHER_RE = _rx(r"^(?P<location>.+?)\s*(?:의\s*)?(?:날씨|기온|온도|일기\s*예보)")
_KO_TIME_WORDS = ("오늘", "지금", "현재", "내일", "모레", "이번 주", "이번주", "주말")


def _clean_korean_location(raw: str) -> str:
    words = [w for w in raw.split() if w not in _KO_TIME_WORDS]
    return " ".join(words).strip(" ,.?!\"'")


# Every English weather pattern has one of these; without one, the three searches are skipped.
_WEATHER_HINTS = ("weather", "temp", "forecast", "how", "is it")


def _detect_weather(text: str, language: Language = "en") -> Intent | None:
    lowered = text.lower()
    for pattern in _WEATHER_RES if any(hint in lowered for hint in _WEATHER_HINTS) else ():
        match = pattern.search(text)
        if match:
            location = _clean_location(match.group("location"))
            if location and any(ch.isalpha() for ch in location):
                return Intent("weather", location)
    if language == "ko":
        match = _KO_WEATHER_RE.match(text)
        if match:
            location = _clean_korean_location(match.group("location"))
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


_NUMBER = r"\d+(?:\.\d+)?"
# "15% of 80", "15 percent of 80" -> "(15 / 100) * 80"; "80의 15%" (Korean order) likewise.
_PERCENT_OF_RE = _rx(rf"(?P<p>{_NUMBER})\s*(?:%|percent\b|per\s*cent\b)\s*of\b")
_KO_PERCENT_OF_RE = _rx(rf"(?P<base>{_NUMBER})\s*의\s*(?P<p>{_NUMBER})\s*(?:%|퍼센트|프로)")
# "2 squared", "3 cubed", "the square root of 16".
_POWER_WORD_RE = _rx(r"\s*\b(?:squared|cubed)\b")
_SQUARE_ROOT_RE = _rx(rf"\b(?:the\s+)?square\s+root\s+of\s+(?P<n>{_NUMBER})")
_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_NUMBER_WORDS: Mapping[str, int] = {word: value for value, word in enumerate(_ONES)} | {
    word: 20 + 10 * index for index, word in enumerate(_TENS)
}
_NUMBER_WORD_RE = _rx(
    r"\b(?P<tens>twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s-]+"
    r"(?P<unit>one|two|three|four|five|six|seven|eight|nine)\b)?"
    r"|\b(?:zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen"
    r"|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen)\b"
)
# Korean: "123 * 456 은 얼마야?", "2 더하기 3은?", "계산해줘: 2^10".
_KO_OPERATORS: Mapping[str, str] = {
    "더하기": "+",
    "빼기": "-",
    "곱하기": "*",
    "나누기": "/",
    "의 제곱": "^2",
}
_KO_OPERATOR_RE = _rx(r"\s*(?:더하기|빼기|곱하기|나누기)\s*|\s*의\s*제곱")
_KO_ARITH_PREFIX_RE = _rx(r"^(?:계산(?:해\s*(?:줘|주세요|봐))?|계산기)\s*:?\s*")
_KO_ARITH_SUFFIX_RE = _rx(
    r"\s*(?:은|는|이|가|을|를)?\s*(?:얼마(?:야|예요|에요|인가요|입니까|지|니|일까)?|몇이야|몇이에요"
    r"|계산해?\s*(?:줘|주세요|봐)?|뭐야|답은)?\s*[?\x{ff1f}.!]*\s*$"
)


def _number_words(text: str) -> str:
    def replace(match: Any) -> str:
        tens = match.group("tens")
        if tens:
            unit = match.group("unit")
            return str(_NUMBER_WORDS[tens.lower()] + (_NUMBER_WORDS[unit.lower()] if unit else 0))
        return str(_NUMBER_WORDS[match.group().lower()])

    return _NUMBER_WORD_RE.sub(replace, text)


def _arithmetic_expression(text: str, language: Language = "en") -> str | None:
    """Return the calculator expression in ``text`` (verb and trailing ?/. removed), if any."""
    if language == "ko":
        prefix = _KO_ARITH_PREFIX_RE.match(text)
        rest = text[prefix.end() :] if prefix else text
        suffix = _KO_ARITH_SUFFIX_RE.search(rest)
        rest = rest[: suffix.start()] if suffix else rest
        rest = _KO_PERCENT_OF_RE.sub(lambda m: f"({m.group('p')} / 100) * {m.group('base')}", rest)
        rest = _KO_OPERATOR_RE.sub(
            lambda m: (
                " " + _KO_OPERATORS[" ".join(m.group().split()).replace("의제곱", "의 제곱")] + " "
            ),
            rest,
        ).strip()
    else:
        verb = _ARITH_VERB_RE.match(text)
        rest = text[verb.end() :] if verb else text
        rest = _strip_trailer(rest, _ARITH_TRAILER_CHARS, _ARITH_TRAILER_WORDS).strip()
        if any(ch.isalpha() for ch in rest):  # words to turn into symbols
            rest = _PERCENT_OF_RE.sub(lambda m: f"({m.group('p')} / 100) *", rest)
            rest = _SQUARE_ROOT_RE.sub(lambda m: f"sqrt({m.group('n')})", rest)
            rest = _POWER_WORD_RE.sub(
                lambda m: "^2" if m.group().strip().lower() == "squared" else "^3", rest
            )
            rest = _number_words(rest)
            rest = _WORD_OPERATOR_RE.sub(
                lambda match: _WORD_OPERATORS[" ".join(match.group().lower().split())], rest
            )
    if not rest or not _is_arithmetic(rest):
        return None
    return rest.translate(_UNICODE_OPERATORS)


# --- units -----------------------------------------------------------------------------------

# "convert 10 km to miles", "100°F in celsius", "what is 5 kg in pounds"
_UNITS_RE = _rx(
    r"^(?:convert\s+|change\s+|what\s+is\s+|what'?s\s+|what\x{2019}s\s+|how\s+much\s+is\s+)?"
    rf"(?P<value>-?{_NUMBER})\s*(?P<source>[^\d\s].*?)\s+(?:to|in|into|as)\s+(?P<target>\D+?)$"
)
# "how many feet are in a mile", "how many ml in 2 cups", "how many miles is 10 km"
_HOW_MANY_RE = _rx(
    r"^how\s+many\s+(?P<target>\D+?)\s+(?:are\s+there\s+in|are\s+in|in|is|are|make)\s+"
    rf"(?:(?P<value>-?{_NUMBER})\s*|an?\s+|one\s+)?(?P<source>\D+?)$"
)
# "10 킬로미터는 몇 마일이야?", "10km를 마일로 바꿔줘" ("섭씨 30도는 화씨로 몇 도야?" is not).
_KO_UNITS_RE = _rx(
    rf"^(?P<value>-?{_NUMBER})\s*(?P<source>[^\d\s]+?)\s*(?:은|는|을|를|이|가)?\s+"
    r"(?:몇\s*)?(?P<target>[^\d\s]+?)\s*(?:로|으로)?\s*"
    r"(?:바꿔\s*(?:줘|주세요)?|변환해?\s*(?:줘|주세요)?|환산해?\s*(?:줘|주세요)?|이야|인가요|야|예요"
    r"|이에요|일까|이지|지)?\s*[?\x{ff1f}.!]*$"
)
_KO_PARTICLES = ("으로", "로", "은", "는", "을", "를", "이", "가")


def _unit_name(raw: str, language: Language) -> str | None:
    name = raw.strip(" .?!\"'")
    if units.find_unit(name):
        return name
    if language == "ko":
        for particle in _KO_PARTICLES:
            if name.endswith(particle) and units.find_unit(name[: -len(particle)]):
                return name[: -len(particle)]
    return None


def _detect_units(text: str, language: Language) -> Intent | None:
    """A unit conversion: a number and two units the `units` tool knows."""
    if language == "ko":
        match = _KO_UNITS_RE.match(text)
    else:
        text = _strip_trailer(text, " ?.!", ("please",))
        match = _UNITS_RE.match(text) or _HOW_MANY_RE.match(text)
    if not match:
        return None
    source = _unit_name(match.group("source"), language)
    target = _unit_name(match.group("target"), language)
    if not source or not target:
        return None
    value = float(match.group("value") or 1)
    return Intent(
        "units",
        int(value) if value.is_integer() else value,
        (("from_unit", source), ("to_unit", target)),
    )


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


# Korean: "검색 fallback", "fallback 검색해줘", "fallback에 대해 알려줘", "fallback이 뭐야?"
_KO_SEARCH_RES: tuple[Any, ...] = (
    _rx(r"(?s)^(?:검색|찾아\s*(?:줘|주세요|봐))\s*:?\s*(?P<query>.+)$"),
    _rx(
        r"(?s)^(?P<query>.+?)\s*(?:을|를)?\s*(?:검색(?:해\s*(?:줘|주세요|봐)?)?|찾아\s*(?:줘|주세요|봐))"
        r"\s*[?\x{ff1f}.!]*$"
    ),
    _rx(
        r"(?s)^(?P<query>.+?)\s*(?:에\s*대해서?|에\s*관해서?|에\s*대한\s*정보를?)\s*"
        r"(?:알려\s*(?:줘|주세요)|말해\s*(?:줘|주세요)|설명해\s*(?:줘|주세요)|찾아\s*(?:줘|주세요))"
        r"\s*[?\x{ff1f}.!]*$"
    ),
    _rx(
        r"(?s)^(?P<query>.+?)\s*(?:은|는|이|가|란)?\s*(?:뭐야|뭐예요|뭐에요|무엇인가요|무엇입니까|뭔가요"
        r"|뭐지|누구야|누구예요|누구인가요)\s*[?\x{ff1f}.!]*$"
    ),
)
_KO_SEARCH_PARTICLES = ("을", "를", "은", "는", "이", "가")


def _search_query(text: str, language: Language = "en") -> str | None:
    match = _SEARCH_RE.match(text)
    if match:
        query = _strip_trailer(match.group("query"), _QUERY_TRAILER_CHARS, _QUERY_TRAILER_WORDS)
    elif language == "ko":
        match = next((m for p in _KO_SEARCH_RES if (m := p.match(text))), None)
        if not match:
            return None
        query = _strip_trailer(match.group("query"), _QUERY_TRAILER_CHARS, ())
    else:
        return None
    query = query.strip(_QUOTES).strip()
    if not query or _WEATHER_ONLY_RE.match(query):
        return None
    return query


# "who are you", "what can you do", "help", "너는 누구야?", "뭘 할 수 있어?": about the model
# itself, answered with the introduction rather than searched for.
_ABOUT_ME_RE = _rx(
    r"^(?:(?:who|what)\s+are\s+you|what\s+can\s+you\s+do|what\s+do\s+you\s+do"
    r"|how\s+do\s+(?:i|you)\s+use\s+(?:you|this)|help)\b"
    r"|^(?:너는?|넌|당신은?)\s*(?:누구|뭐)|^누구(?:야|세요|니|예요)|^(?:뭘|뭐|무엇을)\s*할\s*수\s*있"
    r"|^도움말|^도와줘"
)

MAX_INTENTS = 4
"""Tool calls one message may ask for (the parallel tools node runs them together)."""

# Where one request ends and the next begins: sentence ends, ";", and "and" / "also" /
# "then" / "그리고" between clauses. Each part must be a request on its own, or the whole
# message is read as one ("search for salt and pepper" stays one search).
_CLAUSE_SPLIT_RE = _rx(
    r"\s*(?:[;?\x{ff1f}!]+|\.\s+|,?\s+(?:and\s+(?:then\s+|also\s+)?|also\s+|then\s+)"
    r"|,?\s*그리고\s*|,\s*또\s+)"
)
_CONNECTORS = frozenset({"and", "also", "then", "plus", "그리고", "또"})
# Cheap tests that skip RE2 calls (~10 us each) on the usual one-request message.
_SPLIT_HINTS = (";", "?", "\uff1f", "!", ". ", " and ", " also ", " then ", "그리고", "또 ")
_UNIT_HINTS = (" to ", " in ", " into ", " as ")


def _detect_one(text: str, language: Language) -> Intent | None:
    """The one tool a clause asks for, if any.

    Order matters and mirrors specificity: unit conversions need a number and two known
    units, weather phrasings are unambiguous, arithmetic must be checked before search
    because "what is 2 + 2" also looks like a search, and search is the catch-all for
    "what is X" / "tell me about X".
    """
    first, _, rest = text.partition(" ")
    if rest and first.rstrip(",").lower() in _CONNECTORS:
        text = rest.lstrip(" ,")
    polite = _POLITE_PREFIX_RE.match(text)
    body = (text[polite.end() :] if polite else text).strip()
    if not body:
        return None
    lowered = body.lower()
    has_digit = any(ch.isdigit() for ch in body)
    if "how many" in lowered or (
        has_digit and (language == "ko" or any(hint in lowered for hint in _UNIT_HINTS))
    ):
        conversion = _detect_units(body, language)
        if conversion:
            return conversion
    weather = _detect_weather(text, language)
    if weather:
        return weather
    expression = _arithmetic_expression(body, language)
    if expression:
        return Intent("calculator", expression)
    if _ABOUT_ME_RE.match(body):
        return None
    query = _search_query(body, language)
    if query:
        return Intent("search", query)
    return None


def detect_intents(text: str) -> list[Intent]:
    """Every tool a user message asks for, in the order asked, at most `MAX_INTENTS`.

    "what is 2+2 and what's the weather in Paris" gives a calculator and a weather intent;
    a message whose parts are not each a request is read as one request.
    """
    text = text.strip()
    if not text or len(text) > MAX_CLASSIFIED_CHARS:
        return []
    language = detect_language(text)
    lowered = text.lower()
    if language == "ko" or any(hint in lowered for hint in _SPLIT_HINTS):
        parts = [part for part in _CLAUSE_SPLIT_RE.split(text) if part and part.strip()]
    else:
        parts = [text]
    if len(parts) > 1:
        found = [intent for part in parts if (intent := _detect_one(part.strip(), language))]
        if len(found) >= 2:
            return list(dict.fromkeys(found))[:MAX_INTENTS]
    one = _detect_one(text, language)
    return [one] if one else []


def detect_intent(text: str) -> Intent | None:
    """The first tool a user message asks for (see `detect_intents`), if any."""
    intents = detect_intents(text)
    return intents[0] if intents else None


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


# Every sentence the answers are built from, in each language (str.format templates).
_PHRASES: Mapping[Language, Mapping[str, str]] = {
    "en": {
        "calc_error": "I couldn't calculate {expression}: {error}.",
        "weather_error": "I couldn't get the weather for {location}: {error}.",
        "weather": "The weather in {location}: {parts}.",
        "feels_like": " (feels like {value} °C)",
        "humidity": "humidity {value}%",
        "wind": "wind {value} km/h",
        "search_error": "I couldn't search the knowledge base: {error}.",
        "search_none": 'I found nothing in the knowledge base for "{query}".',
        "search_head": 'Here is what I found for "{query}":',
        "units_error": "I couldn't convert {value} {source} to {target}: {error}.",
        "tool_failed": "The {name} tool failed: {content}",
        "tool_returned": "{name} returned: {content}",
    },
    "ko": {
        "calc_error": "{expression}을(를) 계산할 수 없습니다: {error}.",
        "weather_error": "{location}의 날씨를 가져올 수 없습니다: {error}.",
        "weather": "{location}의 날씨: {parts}.",
        "feels_like": " (체감 {value} °C)",
        "humidity": "습도 {value}%",
        "wind": "바람 {value} km/h",
        "search_error": "지식 베이스를 검색할 수 없습니다: {error}.",
        "search_none": '지식 베이스에서 "{query}"에 대한 결과를 찾지 못했습니다.',
        "search_head": '"{query}"에 대한 검색 결과:',
        "units_error": "{value} {source}을(를) {target}(으)로 변환할 수 없습니다: {error}.",
        "tool_failed": "{name} 도구가 실패했습니다: {content}",
        "tool_returned": "{name} 결과: {content}",
    },
}


def _say(language: Language, key: str, **values: Any) -> str:
    return _PHRASES[language][key].format(**values)


def _calculator_answer(
    data: Mapping[str, Any], args: Mapping[str, Any], language: Language
) -> str | None:
    expression = data.get("expression", args.get("expression", "the expression"))
    if data.get("success") is False:
        return _say(
            language, "calc_error", expression=expression, error=_fmt_error(data.get("error"))
        )
    if "result" not in data:
        return None
    return f"{expression} = {_fmt_value(data['result'])}"


def _weather_answer(
    data: Mapping[str, Any], args: Mapping[str, Any], language: Language
) -> str | None:
    location = data.get("location", args.get("location", "that location"))
    if data.get("success") is False:
        return _say(
            language, "weather_error", location=location, error=_fmt_error(data.get("error"))
        )
    parts: list[str] = []
    if data.get("conditions"):
        parts.append(str(data["conditions"]))
    if data.get("temperature_c") is not None:
        temperature = f"{_fmt_value(data['temperature_c'])} °C"
        if data.get("feels_like_c") is not None:
            temperature += _say(language, "feels_like", value=_fmt_value(data["feels_like_c"]))
        parts.append(temperature)
    if data.get("humidity_pct") is not None:
        parts.append(_say(language, "humidity", value=_fmt_value(data["humidity_pct"])))
    if data.get("wind_speed_kmh") is not None:
        parts.append(_say(language, "wind", value=_fmt_value(data["wind_speed_kmh"])))
    if not parts:
        return None
    return _say(language, "weather", location=location, parts=", ".join(parts))


def _search_answer(
    data: Mapping[str, Any], args: Mapping[str, Any], language: Language
) -> str | None:
    if data.get("success") is False:
        return _say(language, "search_error", error=_fmt_error(data.get("error")))
    query = data.get("query", args.get("query", ""))
    results = data.get("results")
    if not isinstance(results, list):
        return None
    if not results:
        return _say(language, "search_none", query=query)
    lines = [_say(language, "search_head", query=query)]
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


def _fmt_measure(value: Any) -> str:
    """Six significant digits are plenty for a conversion read by a person."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _fmt_value(float(f"{value:.6g}"))
    return _fmt_value(value)


def _units_answer(
    data: Mapping[str, Any], args: Mapping[str, Any], language: Language
) -> str | None:
    value = data.get("value", args.get("value"))
    source = data.get("from_symbol") or data.get("from_unit", args.get("from_unit", ""))
    target = data.get("to_symbol") or data.get("to_unit", args.get("to_unit", ""))
    if data.get("success") is False:
        return _say(
            language,
            "units_error",
            value=_fmt_measure(value),
            source=source,
            target=target,
            error=_fmt_error(data.get("error")),
        )
    if "result" not in data:
        return None
    return f"{_fmt_measure(value)} {source} = {_fmt_measure(data['result'])} {target}"


_Formatter = Callable[[Mapping[str, Any], Mapping[str, Any], Language], str | None]
_RESULT_FORMATTERS: Mapping[str, _Formatter] = {
    "calculator": _calculator_answer,
    "weather": _weather_answer,
    "search": _search_answer,
    "units": _units_answer,
}


def describe_tool_result(
    name: str,
    content: str,
    *,
    status: str = "success",
    args: Mapping[str, Any] | None = None,
    language: Language = "en",
) -> str:
    """Turn one tool result into a sentence for the user, in ``language``.

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
        answer = formatter(data, args, language)
        if answer:
            return answer
    key = "tool_failed" if status == "error" else "tool_returned"
    return _say(language, key, name=name, content=_truncate(content, _RAW_LIMIT))


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


def answer_from_tool_results(
    caller: AIMessage | None, results: Sequence[ToolMessage], *, language: Language = "en"
) -> str:
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
                language=language,
            )
        )
    return "\n".join(paragraphs)


# ---------------------------------------------------------------------------------------------
# Planning a reply
# ---------------------------------------------------------------------------------------------

_GREETING_RE = _rx(
    r"^\s*(?:(?:hi|hello|hey|hiya|howdy|greetings|yo|good\s+(?:morning|afternoon|evening|day))\b"
    r"|안녕|반가워|반갑습니다|하이\b)"
)
_THANKS_RE = _rx(
    r"^\s*(?:(?:thanks|thank\s+you|thx|ty|cheers|much\s+appreciated)\b"
    r"|고마워|고맙습니다|감사(?:합니다|해요)?|땡큐)"
)

_TOOL_LABELS: Mapping[Language, Mapping[ToolName, str]] = {
    "en": {
        "calculator": "the calculator",
        "weather": "the weather tool",
        "search": "the knowledge-base search",
        "units": "the unit converter",
    },
    "ko": {
        "calculator": "계산기",
        "weather": "날씨 도구",
        "search": "지식 베이스 검색",
        "units": "단위 변환기",
    },
}

INTRO = (
    "I'm agent-server's offline model: no LLM provider is configured, so I answer with "
    "simple built-in rules instead of a real language model. I can do arithmetic with the "
    "calculator, convert units, look up the weather and search the knowledge base. Try "
    "'Calculate 10 * 20', 'What's 15% of 80?', 'convert 10 km to miles', 'weather in Seoul' "
    "or 'search for LangGraph'."
)
INTRO_KO = (
    "저는 agent-server의 오프라인 모델입니다. LLM 제공자가 설정되지 않아서 실제 언어 모델이 아니라 "
    "간단한 내장 규칙으로 답합니다. 계산기로 계산하고, 단위를 변환하고, 날씨를 찾고, 지식 베이스를 "
    "검색할 수 있어요. 예: '123 * 456 은 얼마야?', '10 킬로미터는 몇 마일이야?', "
    "'서울 날씨 어때?', '검색 fallback'."
)
_INTROS: Mapping[Language, str] = {"en": INTRO, "ko": INTRO_KO}
_REPLY_PHRASES: Mapping[Language, Mapping[str, str]] = {
    "en": {
        "hello": "Hello!",
        "thanks": "You're welcome!",
        "too_long": _TOO_LONG_NOTE,
        "disabled": "Tools are disabled for this request, so I can't run {label}.",
        "unavailable": "{label} is not available for this request, so I can't run it.",
    },
    "ko": {
        "hello": "안녕하세요!",
        "thanks": "천만에요!",
        "too_long": (
            f"메시지가 규칙이 읽는 {MAX_CLASSIFIED_CHARS}자보다 길어서 요청을 찾아보지 않았습니다."
        ),
        "disabled": "이 요청에서는 도구가 꺼져 있어서 {label}을(를) 실행할 수 없습니다.",
        "unavailable": "이 요청에서는 {label}을(를) 쓸 수 없어서 실행하지 못했습니다.",
    },
}


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

    1. Trailing tool results -> a final answer stating them, in the question's language.
    2. Tool intents in the last user message whose tools are bound -> one tool call each,
       all in this one reply (the tools node runs them in parallel).
    3. Otherwise a short self-description (after a greeting or "you're welcome" when the
       message was one), saying why a recognised request can't be run.
    """
    text = _last_human_text(messages)
    language = detect_language(text)
    caller, results = _trailing_tool_messages(messages)
    if results:
        return Reply(text=answer_from_tool_results(caller, results, language=language))

    bound = {} if tool_choice == "none" else _bound_tools(tools)
    intents = detect_intents(text)
    runnable = [intent for intent in intents if intent.tool in bound]

    if runnable:
        calls = []
        for index, intent in enumerate(runnable):
            args = intent.args
            key = _argument_name(intent.tool, bound[intent.tool])
            if key != _DEFAULT_ARG[intent.tool]:
                args = {key: args.pop(_DEFAULT_ARG[intent.tool]), **args}
            call_id = _tool_call_id(len(messages), index, intent.tool, _args_json(args))
            calls.append(tool_call(name=intent.tool, args=args, id=call_id))
        return Reply(tool_calls=tuple(calls))

    phrases = _REPLY_PHRASES[language]
    parts: list[str] = []
    if len(text.strip()) > MAX_CLASSIFIED_CHARS:
        parts.append(phrases["too_long"])
    elif _GREETING_RE.match(text):
        parts.append(phrases["hello"])
    elif _THANKS_RE.match(text):
        parts.append(phrases["thanks"])
    if intents:
        label = _TOOL_LABELS[language][intents[0].tool]
        if not bound:
            parts.append(phrases["disabled"].format(label=label))
        else:
            sentence = phrases["unavailable"].format(label=label)
            parts.append(sentence[0].upper() + sentence[1:])
    parts.append(_INTROS[language])
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

"""Tests for the deterministic offline chat model (agent_server.llm.offline)."""

from __future__ import annotations

import ast
import functools
import json
import operator
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from agent_server.llm.offline import (
    Intent,
    OfflineChatModel,
    answer_from_tool_results,
    count_tokens,
    describe_tool_result,
    detect_intent,
    detect_intents,
    detect_language,
    split_stream_chunks,
)

# ----------------------------------------------------------------------------------------
# Stub tools (the real ones live elsewhere; only names and signatures matter here)
# ----------------------------------------------------------------------------------------

_BIN_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BIN_OPS:
        return _BIN_OPS[type(node.op)](_eval(node.left), _eval(node.right))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand)
    raise ValueError("unsupported expression")


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    try:
        result = _eval(ast.parse(expression.replace("^", "**"), mode="eval"))
    except (ValueError, SyntaxError, ZeroDivisionError) as exc:
        return json.dumps({"success": False, "expression": expression, "error": str(exc)})
    return json.dumps({"success": True, "expression": expression, "result": result})


@tool
def weather(location: str) -> str:
    """Get the current weather for a location."""
    return json.dumps(
        {
            "success": True,
            "location": location,
            "temperature_c": 12.3,
            "feels_like_c": 10.1,
            "humidity_pct": 60,
            "wind_speed_kmh": 8.2,
            "conditions": "Partly cloudy",
            "observed_at": "2026-11-24T05:00",
        }
    )


@tool
def search(query: str) -> str:
    """Search the knowledge base."""
    return json.dumps({"success": True, "query": query, "results": []})


@tool
def units(value: float, from_unit: str, to_unit: str) -> str:
    """Convert a value between units."""
    from agent_server.tools.units import convert

    return json.dumps(convert(value, from_unit, to_unit))


ALL_TOOLS = [calculator, weather, search, units]


@pytest.fixture
def model() -> OfflineChatModel:
    return OfflineChatModel()


@pytest.fixture
def bound(model: OfflineChatModel) -> Any:
    return model.bind_tools(ALL_TOOLS)


def _tool_turn(name: str, args: dict[str, Any], content: str, **kw: Any) -> list[BaseMessage]:
    """A conversation ending with one tool call and its result."""
    call_id = f"call_{name}"
    return [
        HumanMessage("question"),
        AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}]),
        ToolMessage(content=content, tool_call_id=call_id, name=name, **kw),
    ]


# ----------------------------------------------------------------------------------------
# Intent detection and tool routing
# ----------------------------------------------------------------------------------------

ROUTING_CASES = [
    ("weather in Seoul", "weather", {"location": "Seoul"}),
    ("What's the weather like in Paris today?", "weather", {"location": "Paris"}),
    ("temperature in New York", "weather", {"location": "New York"}),
    ("forecast for Tokyo", "weather", {"location": "Tokyo"}),
    ("how hot is it in Cairo", "weather", {"location": "Cairo"}),
    (
        "Weather in Seoul, South Korea right now please?",
        "weather",
        {"location": "Seoul, South Korea"},
    ),
    ("is it raining in London?", "weather", {"location": "London"}),
    ("weather for tomorrow in Paris", "weather", {"location": "Paris"}),
    ("hey, what is the temperature in New York right now?", "weather", {"location": "New York"}),
    ("Calculate 10 * 20", "calculator", {"expression": "10 * 20"}),
    ("what is (3+4)*2?", "calculator", {"expression": "(3+4)*2"}),
    ("sqrt(16) + 1", "calculator", {"expression": "sqrt(16) + 1"}),
    ("compute 2^10", "calculator", {"expression": "2^10"}),
    ("evaluate 7 % 3", "calculator", {"expression": "7 % 3"}),
    ("how much is 12/4", "calculator", {"expression": "12/4"}),
    ("What is 2 plus 3", "calculator", {"expression": "2 + 3"}),
    ("what's 10 divided by 4?", "calculator", {"expression": "10 / 4"}),
    ("Can you calculate 3 \u00d7 4?", "calculator", {"expression": "3 * 4"}),
    ("pow(2, 8) - pi", "calculator", {"expression": "pow(2, 8) - pi"}),
    ("search for LangGraph", "search", {"query": "LangGraph"}),
    ("search langgraph checkpoints", "search", {"query": "langgraph checkpoints"}),
    ("look up vector databases", "search", {"query": "vector databases"}),
    ("lookup RAG", "search", {"query": "RAG"}),
    ("find information about checkpointers", "search", {"query": "checkpointers"}),
    ("What do you know about LangChain?", "search", {"query": "LangChain"}),
    ("tell me about Python.", "search", {"query": "Python"}),
    ("Who is Ada Lovelace?", "search", {"query": "Ada Lovelace"}),
    ("what is LangGraph?", "search", {"query": "LangGraph"}),
    ("what is 42", "search", {"query": "42"}),  # a bare number is not arithmetic
]


@pytest.mark.parametrize(("text", "tool_name", "args"), ROUTING_CASES)
def test_detect_intent(text: str, tool_name: str, args: dict[str, str]) -> None:
    intent = detect_intent(text)
    assert intent is not None
    assert intent.tool == tool_name
    assert intent.args == args


@pytest.mark.parametrize("text", ["hi", "hello there", "thanks!", "", "what's the weather?", "7"])
def test_no_intent(text: str) -> None:
    assert detect_intent(text) is None


@pytest.mark.parametrize(("text", "tool_name", "args"), ROUTING_CASES)
async def test_routes_to_bound_tool(bound: Any, text: str, tool_name: str, args: dict) -> None:
    message = await bound.ainvoke([HumanMessage(text)])
    assert message.content == ""
    assert len(message.tool_calls) == 1
    call = message.tool_calls[0]
    assert call["name"] == tool_name
    assert call["args"] == args
    assert call["id"].startswith("call_")
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert message.response_metadata["model_name"] == "offline"


def test_sync_invoke_routes(bound: Any) -> None:
    message = bound.invoke([HumanMessage("Calculate 10 * 20")])
    assert message.tool_calls[0]["args"] == {"expression": "10 * 20"}


async def test_content_blocks_are_read(bound: Any) -> None:
    human = HumanMessage(content=[{"type": "text", "text": "weather in Seoul"}])
    message = await bound.ainvoke([human])
    assert message.tool_calls[0]["args"] == {"location": "Seoul"}


async def test_uses_last_human_message(bound: Any) -> None:
    messages = [
        HumanMessage("weather in Seoul"),
        AIMessage("The weather in Seoul: sunny."),
        HumanMessage("calculate 1 + 1"),
    ]
    message = await bound.ainvoke(messages)
    assert message.tool_calls[0]["name"] == "calculator"


# ----------------------------------------------------------------------------------------
# Tool availability
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Calculate 10 * 20", "calculator"),
        ("weather in Seoul", "weather"),
        ("search for LangGraph", "search"),
    ],
)
async def test_no_tools_bound_never_calls_tools(model: OfflineChatModel, text: str, label: str):
    message = await model.ainvoke([HumanMessage(text)])
    assert message.tool_calls == []
    assert "Tools are disabled for this request" in message.content
    assert label in message.content
    assert message.response_metadata["finish_reason"] == "stop"


async def test_empty_tools_list_never_calls_tools(model: OfflineChatModel) -> None:
    message = await model.bind_tools([]).ainvoke([HumanMessage("Calculate 10 * 20")])
    assert message.tool_calls == []
    assert "Tools are disabled" in message.content


async def test_tool_choice_none_disables_tools(model: OfflineChatModel) -> None:
    runnable = model.bind_tools(ALL_TOOLS, tool_choice="none")
    message = await runnable.ainvoke([HumanMessage("Calculate 10 * 20")])
    assert message.tool_calls == []


async def test_only_bound_tools_are_called(model: OfflineChatModel) -> None:
    runnable = model.bind_tools([calculator])
    message = await runnable.ainvoke([HumanMessage("What's the weather in Seoul?")])
    assert message.tool_calls == []
    assert "not available" in message.content
    assert "offline" in message.content
    # The bound tool still works.
    message = await runnable.ainvoke([HumanMessage("Calculate 10 * 20")])
    assert [c["name"] for c in message.tool_calls] == ["calculator"]


async def test_argument_name_follows_bound_schema(model: OfflineChatModel) -> None:
    @tool("weather")
    def weather_by_city(city: str) -> str:
        """Weather by city."""
        return city

    message = await model.bind_tools([weather_by_city]).ainvoke([HumanMessage("weather in Rome")])
    assert message.tool_calls[0]["args"] == {"city": "Rome"}


# ----------------------------------------------------------------------------------------
# Generic replies
# ----------------------------------------------------------------------------------------


async def test_generic_reply_mentions_offline(bound: Any) -> None:
    message = await bound.ainvoke([HumanMessage("Write me a poem about the sea")])
    assert message.tool_calls == []
    assert "offline" in message.content
    assert "Calculate 10 * 20" in message.content
    assert "weather in Seoul" in message.content
    assert "search for LangGraph" in message.content
    assert message.response_metadata == {"model_name": "offline", "finish_reason": "stop"}


@pytest.mark.parametrize("greeting", ["hi", "Hello!", "hey there"])
async def test_greeting(bound: Any, greeting: str) -> None:
    message = await bound.ainvoke([HumanMessage(greeting)])
    assert message.content.startswith("Hello!")
    assert "offline" in message.content


async def test_no_human_message(model: OfflineChatModel) -> None:
    message = await model.ainvoke([SystemMessage("You are helpful.")])
    assert "offline" in message.content


# ----------------------------------------------------------------------------------------
# Final answers from tool results
# ----------------------------------------------------------------------------------------

WEATHER_OK = {
    "success": True,
    "location": "Seoul, South Korea",
    "temperature_c": 12.3,
    "feels_like_c": 10.1,
    "humidity_pct": 60,
    "wind_speed_kmh": 8.2,
    "conditions": "Partly cloudy",
    "observed_at": "2026-11-24T05:00",
}
SEARCH_OK = {
    "success": True,
    "query": "langgraph",
    "results": [
        {"document_id": "d1", "title": "LangGraph", "snippet": "LangGraph is a ...", "score": 1.2},
        {"document_id": "d2", "title": "Pregel", "snippet": "Pregel runs\nsteps.", "score": 0.4},
    ],
}

ANSWER_CASES = [
    (
        "calculator",
        {"expression": "10 * 20"},
        {"success": True, "expression": "10 * 20", "result": 200},
        "10 * 20 = 200",
    ),
    (
        "calculator",
        {"expression": "10 / 4"},
        {"success": True, "expression": "10 / 4", "result": 2.5},
        "10 / 4 = 2.5",
    ),
    (
        "calculator",
        {"expression": "1/0"},
        {"success": False, "expression": "1/0", "error": "division by zero"},
        "I couldn't calculate 1/0: division by zero.",
    ),
    (
        "weather",
        {"location": "Seoul"},
        WEATHER_OK,
        "The weather in Seoul, South Korea: Partly cloudy, 12.3 °C (feels like 10.1 °C), "
        "humidity 60%, wind 8.2 km/h.",
    ),
    (
        "weather",
        {"location": "Atlantis"},
        {"success": False, "location": "Atlantis", "error": "location not found"},
        "I couldn't get the weather for Atlantis: location not found.",
    ),
    (
        "search",
        {"query": "langgraph"},
        SEARCH_OK,
        'Here is what I found for "langgraph":\n'
        "- LangGraph: LangGraph is a ... [doc d1]\n"
        "- Pregel: Pregel runs steps. [doc d2]",
    ),
    (
        "search",
        {"query": "langgraph"},
        {"success": True, "query": "langgraph", "results": []},
        'I found nothing in the knowledge base for "langgraph".',
    ),
    (
        "search",
        {"query": "x"},
        {"success": False, "query": "x", "error": "index unavailable"},
        "I couldn't search the knowledge base: index unavailable.",
    ),
    (
        "translator",
        {"text": "hola"},
        {"translation": "hello"},
        'translator returned: {"translation": "hello"}',
    ),
]


@pytest.mark.parametrize(("name", "args", "result", "expected"), ANSWER_CASES)
async def test_answer_from_tool_result(
    bound: Any, name: str, args: dict, result: dict, expected: str
) -> None:
    message = await bound.ainvoke(_tool_turn(name, args, json.dumps(result)))
    assert message.content == expected
    assert message.tool_calls == []
    assert message.response_metadata["finish_reason"] == "stop"


async def test_calculator_result_200_is_stated(bound: Any) -> None:
    content = json.dumps({"success": True, "expression": "10 * 20", "result": 200.0})
    message = await bound.ainvoke(_tool_turn("calculator", {"expression": "10 * 20"}, content))
    assert "10 * 20 = 200" in message.content


async def test_error_status_plain_text(bound: Any) -> None:
    messages = _tool_turn("foo", {}, "Error: tool 'foo' timed out after 10s", status="error")
    message = await bound.ainvoke(messages)
    assert message.content == "The foo tool failed: Error: tool 'foo' timed out after 10s"


def test_non_json_and_truncation() -> None:
    assert describe_tool_result("echo", "plain text") == "echo returned: plain text"
    long = describe_tool_result("echo", "x" * 2000)
    assert len(long) <= len("echo returned: ") + 500
    assert long.endswith("…")
    # A known tool whose output is not JSON is reported verbatim, not invented.
    assert describe_tool_result("calculator", "boom") == "calculator returned: boom"


def test_search_results_are_capped_at_five() -> None:
    results = [
        {"document_id": f"d{i}", "title": f"T{i}", "snippet": "s", "score": 1} for i in range(8)
    ]
    text = describe_tool_result(
        "search", json.dumps({"success": True, "query": "q", "results": results})
    )
    assert text.count("\n- ") == 5
    assert "[doc d4]" in text
    assert "[doc d5]" not in text


async def test_several_results_in_tool_call_order(bound: Any) -> None:
    ai = AIMessage(
        content="",
        tool_calls=[
            {"name": "calculator", "args": {"expression": "1 + 1"}, "id": "a"},
            {"name": "weather", "args": {"location": "Seoul"}, "id": "b"},
        ],
    )
    # Results arrive in the opposite order to the calls.
    messages = [
        HumanMessage("q"),
        ai,
        ToolMessage(json.dumps(WEATHER_OK), tool_call_id="b", name="weather"),
        ToolMessage(
            json.dumps({"success": True, "expression": "1 + 1", "result": 2}),
            tool_call_id="a",
            name="calculator",
        ),
    ]
    message = await bound.ainvoke(messages)
    lines = message.content.split("\n")
    assert lines[0] == "1 + 1 = 2"
    assert lines[1].startswith("The weather in Seoul, South Korea:")
    assert answer_from_tool_results(ai, messages[2:]) == message.content


# ----------------------------------------------------------------------------------------
# Usage metadata
# ----------------------------------------------------------------------------------------


def test_count_tokens() -> None:
    assert count_tokens("") == 0
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("10 * 20 = 200") == 5
    assert count_tokens('{"expression": "10 * 20"}') == 11


async def test_usage_for_text_reply(bound: Any) -> None:
    messages = [SystemMessage("Be brief."), HumanMessage("Write me a poem")]
    message = await bound.ainvoke(messages)
    expected_in = count_tokens("Be brief.") + count_tokens("Write me a poem")
    expected_out = count_tokens(message.content)
    assert message.usage_metadata == {
        "input_tokens": expected_in,
        "output_tokens": expected_out,
        "total_tokens": expected_in + expected_out,
    }


async def test_usage_for_tool_call(bound: Any) -> None:
    message = await bound.ainvoke([HumanMessage("Calculate 10 * 20")])
    assert message.usage_metadata["input_tokens"] == count_tokens("Calculate 10 * 20")
    assert message.usage_metadata["output_tokens"] == count_tokens('{"expression": "10 * 20"}')


async def test_usage_counts_tool_args_and_results(bound: Any) -> None:
    content = json.dumps({"success": True, "expression": "10 * 20", "result": 200})
    messages = _tool_turn("calculator", {"expression": "10 * 20"}, content)
    message = await bound.ainvoke(messages)
    expected_in = (
        count_tokens("question")
        + count_tokens(json.dumps({"expression": "10 * 20"}))
        + count_tokens(content)
    )
    assert message.usage_metadata["input_tokens"] == expected_in
    assert message.usage_metadata["output_tokens"] == count_tokens("10 * 20 = 200")


# ----------------------------------------------------------------------------------------
# Streaming
# ----------------------------------------------------------------------------------------


def test_split_stream_chunks_roundtrip() -> None:
    for text in ["", "one", "  lead and trail  ", "a\nb  c", "10 * 20 = 200"]:
        assert "".join(split_stream_chunks(text)) == text
    assert split_stream_chunks("Hello big world") == ["Hello", " big", " world"]


STREAM_INPUTS = [
    [HumanMessage("Write me a poem")],
    [HumanMessage("hi")],
    [HumanMessage("Calculate 10 * 20")],
    _tool_turn("search", {"query": "langgraph"}, json.dumps(SEARCH_OK)),
]


@pytest.mark.parametrize("messages", STREAM_INPUTS)
async def test_astream_matches_ainvoke(bound: Any, messages: list[BaseMessage]) -> None:
    invoked = await bound.ainvoke(messages)
    chunks = [chunk async for chunk in bound.astream(messages)]
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(c.content for c in chunks) == invoked.content
    total = functools.reduce(operator.add, chunks)
    assert total.content == invoked.content
    assert total.tool_calls == invoked.tool_calls
    assert total.usage_metadata == invoked.usage_metadata
    assert total.response_metadata["model_name"] == "offline"
    assert total.response_metadata["finish_reason"] == invoked.response_metadata["finish_reason"]
    # Usage is reported once, on the last chunk, so summing does not double count.
    assert [c.usage_metadata is not None for c in chunks].count(True) == 1
    assert chunks[-1].usage_metadata is not None


async def test_astream_is_word_by_word(bound: Any) -> None:
    chunks = [c async for c in bound.astream([HumanMessage("Write me a poem")])]
    texts = [c.content for c in chunks if c.content]
    assert len(texts) > 10
    assert all(len(t.split()) == 1 for t in texts)
    assert all(t.startswith(" ") for t in texts[1:])


async def test_astream_tool_call_chunk(bound: Any) -> None:
    chunks = [c async for c in bound.astream([HumanMessage("weather in Seoul")])]
    with_calls = [c for c in chunks if c.tool_call_chunks]
    assert len(with_calls) == 1
    tc = with_calls[0].tool_call_chunks[0]
    assert tc["name"] == "weather"
    assert json.loads(tc["args"]) == {"location": "Seoul"}


def test_sync_stream_matches_invoke(bound: Any) -> None:
    messages = [HumanMessage("Calculate 10 * 20")]
    total = functools.reduce(operator.add, list(bound.stream(messages)))
    invoked = bound.invoke(messages)
    assert total.tool_calls == invoked.tool_calls
    assert total.usage_metadata == invoked.usage_metadata


async def test_stop_sequence_truncates(model: OfflineChatModel) -> None:
    message = await model.ainvoke([HumanMessage("poem")], stop=["offline"])
    assert "offline" not in message.content
    assert message.content


# ----------------------------------------------------------------------------------------
# Determinism and identity
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("messages", STREAM_INPUTS)
async def test_deterministic(bound: Any, messages: list[BaseMessage]) -> None:
    first = await bound.ainvoke(messages)
    second = await bound.ainvoke(messages)
    assert first.content == second.content
    assert first.tool_calls == second.tool_calls
    assert first.usage_metadata == second.usage_metadata


async def test_tool_call_ids_depend_on_position(bound: Any) -> None:
    one = await bound.ainvoke([HumanMessage("Calculate 10 * 20")])
    three = await bound.ainvoke(
        [HumanMessage("x"), AIMessage("y"), HumanMessage("Calculate 10 * 20")]
    )
    assert one.tool_calls[0]["id"] != three.tool_calls[0]["id"]


async def test_message_has_id(bound: Any) -> None:
    message = await bound.ainvoke([HumanMessage("hello")])
    assert message.id


def test_model_identity(model: OfflineChatModel) -> None:
    assert model._llm_type == "offline"
    assert model._identifying_params == {"model_name": "offline"}
    assert Intent("search", "x").args == {"query": "x"}


# ----------------------------------------------------------------------------------------
# Inside LangGraph
# ----------------------------------------------------------------------------------------


def _build_graph(model: OfflineChatModel) -> Any:
    llm = model.bind_tools(ALL_TOOLS)

    async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        return {"messages": [await llm.ainvoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(ALL_TOOLS))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile()


async def test_langgraph_end_to_end(model: OfflineChatModel) -> None:
    graph = _build_graph(model)
    result = await graph.ainvoke({"messages": [HumanMessage("Calculate 10 * 20")]})
    messages = result["messages"]
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    assert messages[-1].content == "10 * 20 = 200"


async def test_langgraph_streams_tokens(model: OfflineChatModel) -> None:
    graph = _build_graph(model)
    agent_chunks: list[AIMessageChunk] = []
    async for chunk, metadata in graph.astream(
        {"messages": [HumanMessage("weather in Seoul")]}, stream_mode="messages"
    ):
        if metadata["langgraph_node"] == "agent" and isinstance(chunk, AIMessageChunk):
            agent_chunks.append(chunk)
    streamed_text = "".join(c.content for c in agent_chunks)
    assert any(c.tool_call_chunks for c in agent_chunks)
    expected = describe_tool_result("weather", weather.invoke({"location": "Seoul"}))
    assert streamed_text == expected
    # Word-by-word: many chunks, not one blob.
    assert len([c for c in agent_chunks if c.content]) == len(expected.split())


# ----------------------------------------------------------------------------------------
# A first run that makes sense (issue 21): English and Korean, several intents per message
# ----------------------------------------------------------------------------------------

FIRST_RUN_CASES: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = [
    # arithmetic in words and with percentages
    ("What's 15% of 80?", [("calculator", {"expression": "(15 / 100) * 80"})]),
    ("what is 15 percent of 200", [("calculator", {"expression": "(15 / 100) * 200"})]),
    ("what is 2 to the power of 10", [("calculator", {"expression": "2 ^ 10"})]),
    ("what is two plus three", [("calculator", {"expression": "2 + 3"})]),
    ("what is twenty-one times 2", [("calculator", {"expression": "21 * 2"})]),
    ("what's 7 squared?", [("calculator", {"expression": "7^2"})]),
    ("what is the square root of 16", [("calculator", {"expression": "sqrt(16)"})]),
    ("Calculate 10 * 20", [("calculator", {"expression": "10 * 20"})]),
    # unit conversions
    (
        "convert 10 km to miles",
        [("units", {"value": 10, "from_unit": "km", "to_unit": "miles"})],
    ),
    (
        "What's 100°F in Celsius?",
        [("units", {"value": 100, "from_unit": "°F", "to_unit": "Celsius"})],
    ),
    (
        "how many feet are in a mile?",
        [("units", {"value": 1, "from_unit": "mile", "to_unit": "feet"})],
    ),
    ("2.5 kg in pounds", [("units", {"value": 2.5, "from_unit": "kg", "to_unit": "pounds"})]),
    # several intents, one round
    (
        "what is 2+2 and what's the weather in Paris",
        [("calculator", {"expression": "2+2"}), ("weather", {"location": "Paris"})],
    ),
    (
        "What's 15% of 80? And the weather in Seoul?",
        [("calculator", {"expression": "(15 / 100) * 80"}), ("weather", {"location": "Seoul"})],
    ),
    (
        "convert 5 miles to km; search for fallback",
        [
            ("units", {"value": 5, "from_unit": "miles", "to_unit": "km"}),
            ("search", {"query": "fallback"}),
        ],
    ),
    # "and" inside one request stays one request
    ("search for salt and pepper", [("search", {"query": "salt and pepper"})]),
    ("weather in Seoul and Busan", [("weather", {"location": "Seoul and Busan"})]),
    # Korean
    ("123 * 456 은 얼마야?", [("calculator", {"expression": "123 * 456"})]),
    ("2 더하기 3은?", [("calculator", {"expression": "2 + 3"})]),
    ("80의 15%는 얼마야?", [("calculator", {"expression": "(15 / 100) * 80"})]),
    ("계산해줘: 2^10", [("calculator", {"expression": "2^10"})]),
    ("서울 날씨 어때?", [("weather", {"location": "서울"})]),
    ("오늘 부산의 기온은?", [("weather", {"location": "부산"})]),
    ("검색 fallback", [("search", {"query": "fallback"})]),
    ("LangGraph 검색해줘", [("search", {"query": "LangGraph"})]),
    ("fallback에 대해 알려줘", [("search", {"query": "fallback"})]),
    ("체크포인트가 뭐야?", [("search", {"query": "체크포인트"})]),
    (
        "10 킬로미터는 몇 마일이야?",
        [("units", {"value": 10, "from_unit": "킬로미터", "to_unit": "마일"})],
    ),
    ("10km를 마일로 바꿔줘", [("units", {"value": 10, "from_unit": "km", "to_unit": "마일"})]),
    (
        "서울 날씨 어때? 그리고 2+2는 얼마야?",
        [("weather", {"location": "서울"}), ("calculator", {"expression": "2+2"})],
    ),
]


@pytest.mark.parametrize(("text", "expected"), FIRST_RUN_CASES)
async def test_first_run_intents_become_tool_calls_in_one_round(
    bound: Any, text: str, expected: list[tuple[str, dict[str, Any]]]
) -> None:
    assert [(i.tool, i.args) for i in detect_intents(text)] == expected
    message = await bound.ainvoke([HumanMessage(text)])
    assert [(c["name"], c["args"]) for c in message.tool_calls] == expected
    assert len({c["id"] for c in message.tool_calls}) == len(expected)
    assert message.content == ""


SMALL_TALK_CASES = [
    ("hi", "Hello!"),
    ("Hello, who are you?", "Hello!"),
    ("thanks!", "You're welcome!"),
    ("Thank you so much", "You're welcome!"),
    ("what can you do?", "I'm agent-server's offline model"),
    ("help", "I'm agent-server's offline model"),
    ("안녕하세요", "안녕하세요!"),
    ("고마워", "천만에요!"),
    ("너는 누구야?", "저는 agent-server의 오프라인 모델입니다"),
]


@pytest.mark.parametrize(("text", "start"), SMALL_TALK_CASES)
async def test_small_talk_gets_a_greeting_and_what_it_can_do(
    bound: Any, text: str, start: str
) -> None:
    message = await bound.ainvoke([HumanMessage(text)])
    assert message.tool_calls == []  # not a search for "you"
    assert message.content.startswith(start)
    korean = detect_language(text) == "ko"
    assert ("오프라인 모델" if korean else "offline model") in message.content
    # Honest about being rules, not a language model.
    assert ("규칙" if korean else "rules instead of a real language model") in message.content


ANSWER_LANGUAGE_CASES = [
    (
        "서울 날씨 어때?",
        "weather",
        {"location": "서울"},
        WEATHER_OK,
        "Seoul, South Korea의 날씨: Partly cloudy, 12.3 °C (체감 10.1 °C), 습도 60%, "
        "바람 8.2 km/h.",
    ),
    (
        "검색 sourdough",
        "search",
        {"query": "sourdough"},
        {"success": True, "query": "sourdough", "results": []},
        '지식 베이스에서 "sourdough"에 대한 결과를 찾지 못했습니다.',
    ),
    (
        "123 * 456 은 얼마야?",
        "calculator",
        {"expression": "123 * 456"},
        {"success": True, "expression": "123 * 456", "result": 56088},
        "123 * 456 = 56088",
    ),
    (
        "convert 10 km to miles",
        "units",
        {"value": 10, "from_unit": "km", "to_unit": "miles"},
        {
            "success": True,
            "value": 10,
            "from_symbol": "km",
            "to_symbol": "mi",
            "result": 6.213711922,
        },
        "10 km = 6.21371 mi",
    ),
    (
        "convert 10 km to kg",
        "units",
        {"value": 10, "from_unit": "km", "to_unit": "kg"},
        {"success": False, "value": 10, "error": "cannot convert length (km) to mass (kg)"},
        "I couldn't convert 10 km to kg: cannot convert length (km) to mass (kg).",
    ),
]


@pytest.mark.parametrize(("question", "name", "args", "result", "expected"), ANSWER_LANGUAGE_CASES)
async def test_answers_in_the_language_of_the_question(
    bound: Any, question: str, name: str, args: dict, result: dict, expected: str
) -> None:
    call_id = f"call_{name}"
    messages = [
        HumanMessage(question),
        AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": call_id}]),
        ToolMessage(content=json.dumps(result), tool_call_id=call_id, name=name),
    ]
    message = await bound.ainvoke(messages)
    assert message.content == expected


async def test_korean_tools_disabled_reply_is_korean(model: OfflineChatModel) -> None:
    message = await model.ainvoke([HumanMessage("서울 날씨 어때?")])
    assert message.tool_calls == []
    assert "날씨 도구" in message.content
    assert "오프라인 모델" in message.content


async def test_multi_intent_runs_only_the_bound_tools(model: OfflineChatModel) -> None:
    runnable = model.bind_tools([calculator])
    message = await runnable.ainvoke([HumanMessage("what is 2+2 and what's the weather in Paris")])
    assert [c["name"] for c in message.tool_calls] == ["calculator"]


async def test_multi_intent_graph_answers_both(model: OfflineChatModel) -> None:
    graph = _build_graph(model)
    result = await graph.ainvoke(
        {"messages": [HumanMessage("what is 2+2 and what's the weather in Paris")]}
    )
    messages = result["messages"]
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "ToolMessage",
        "AIMessage",
    ]
    lines = messages[-1].content.split("\n")
    assert lines[0] == "2+2 = 4"
    assert lines[1].startswith("The weather in Paris:")


def test_intents_are_capped_per_message() -> None:
    text = " and ".join(f"what is {i}+{i}" for i in range(10))
    assert len(detect_intents(text)) == 4

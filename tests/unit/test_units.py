"""The `units` tool: exact factors, names in English and Korean, errors as results."""

from __future__ import annotations

import pytest
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ValidationError

from agent_server.tools.units import convert, find_unit, make_units_tool

CONVERSIONS = [
    (10, "km", "miles", 6.213711922),
    (1, "mile", "feet", 5280.0),
    (12, "inches", "cm", 30.48),
    (1, "nautical mile", "m", 1852.0),
    (100, "°F", "celsius", 37.77777778),
    (0, "degrees C", "degrees F", 32.0),
    (-40, "c", "f", -40.0),
    (0, "K", "°C", -273.15),
    (1, "kg", "pounds", 2.204622622),
    (16, "oz", "lb", 1.0),
    (1, "stone", "kg", 6.35029318),
    (2, "cups", "ml", 473.176473),
    (1, "gallon", "liters", 3.785411784),
    (1, "imperial gallon", "l", 4.54609),
    (3, "tsp", "tbsp", 1.0),
    (60, "mph", "km/h", 96.56064),
    (10, "m/s", "kph", 36.0),
    (1, "knot", "km/h", 1.852),
    (10, "킬로미터", "마일", 6.213711922),
    (30, "섭씨", "화씨", 86.0),
    (1, "킬로그램", "파운드", 2.204622622),
]


@pytest.mark.parametrize(("value", "source", "target", "expected"), CONVERSIONS)
def test_conversions(value: float, source: str, target: str, expected: float) -> None:
    result = convert(value, source, target)
    assert result["success"] is True, result
    assert result["result"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    ("name", "symbol"),
    [("Kilometres", "km"), ("KM", "km"), ("feet", "ft"), ("Miles per hour", "mph"), ("℃", "°C")],
)
def test_names_are_matched_loosely(name: str, symbol: str) -> None:
    unit = find_unit(name)
    assert unit is not None and unit.symbol == symbol


@pytest.mark.parametrize(
    ("value", "source", "target", "error"),
    [
        (10, "km", "kg", "cannot convert length (km) to mass (kg)"),
        (1, "parsec", "km", "unknown unit 'parsec'"),
        (1, "km", "furlongs", "unknown unit 'furlongs'"),
        (-500, "°C", "°F", "below absolute zero"),
        (1e16, "km", "mi", "at most"),
    ],
)
def test_errors_are_results(value: float, source: str, target: str, error: str) -> None:
    result = convert(value, source, target)
    assert result["success"] is False
    assert error in result["error"]


def test_results_are_rounded_to_significant_digits() -> None:
    assert convert(1, "mm", "mi")["result"] == 6.213711922e-07
    assert convert(123456789, "km", "m")["result"] == 123456789000.0


def test_tool_schema_and_call() -> None:
    tool = make_units_tool()
    schema = convert_to_openai_tool(tool)["function"]
    assert schema["name"] == "units"
    assert set(schema["parameters"]["properties"]) == {"value", "from_unit", "to_unit"}
    assert set(schema["parameters"]["required"]) == {"value", "from_unit", "to_unit"}
    assert tool.invoke({"value": 10, "from_unit": "km", "to_unit": "mi"})["result"] == (
        pytest.approx(6.213711922)
    )
    with pytest.raises(ValidationError):
        tool.invoke({"value": float("nan"), "from_unit": "km", "to_unit": "mi"})

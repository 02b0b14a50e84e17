"""The `units` tool: convert a value between common units of length, mass, volume, speed
and temperature.

Models are unreliable at unit arithmetic (which gallon? Fahrenheit offsets), and "convert 10 km
to miles" is one of the first things a new user tries, so the agent gets an exact converter.

Written as a table rather than with `pint`: pint parses a registry of ~1,000 units at start-up
(tens of milliseconds and megabytes per process, on a server that is measured at 500 open
streams) to serve the ~50 everyday units people ask a chat about; a table of exact factors
(international yard and pound, US customary volumes) is short enough to review in full and
gives the same answer on every machine. Unit names are matched in English (singular, plural,
symbols) and Korean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

MAX_ABS_VALUE: Final = 1e15
"""Largest magnitude accepted: beyond it floats lose the digits a conversion should keep."""

SIGNIFICANT_DIGITS: Final = 10
"""Results are rounded to this many significant digits (float noise such as 6.2137119220000001
is not information)."""


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit: its symbol, its quantity, and how to reach the quantity's base unit."""

    symbol: str
    quantity: str
    to_base: Callable[[float], float]
    from_base: Callable[[float], float]


def _linear(symbol: str, quantity: str, factor: float) -> Unit:
    return Unit(symbol, quantity, lambda v: v * factor, lambda v: v / factor)


# Base units: metre, kilogram, litre, metre per second, kelvin.
# (symbol, quantity, factor to base, English names (singular), other aliases)
_LINEAR: tuple[tuple[str, str, float, tuple[str, ...], tuple[str, ...]], ...] = (
    ("mm", "length", 0.001, ("millimeter", "millimetre"), ("밀리미터",)),
    ("cm", "length", 0.01, ("centimeter", "centimetre"), ("센티미터", "센티")),
    ("m", "length", 1.0, ("meter", "metre"), ("미터",)),
    ("km", "length", 1000.0, ("kilometer", "kilometre"), ("킬로미터", "키로미터", "킬로")),
    ("in", "length", 0.0254, ("inch",), ("inches", '"', "인치")),
    ("ft", "length", 0.3048, ("foot",), ("feet", "'", "피트")),
    ("yd", "length", 0.9144, ("yard",), ("야드",)),
    ("mi", "length", 1609.344, ("mile",), ("마일",)),
    ("nmi", "length", 1852.0, ("nautical mile",), ("해리",)),
    ("mg", "mass", 1e-6, ("milligram", "milligramme"), ("밀리그램",)),
    ("g", "mass", 0.001, ("gram", "gramme"), ("그램",)),
    ("kg", "mass", 1.0, ("kilogram", "kilogramme", "kilo"), ("킬로그램", "키로그램")),
    ("t", "mass", 1000.0, ("tonne", "metric ton"), ("톤",)),
    ("oz", "mass", 0.028349523125, ("ounce",), ("온스",)),
    ("lb", "mass", 0.45359237, ("pound",), ("lbs", "파운드")),
    ("st", "mass", 6.35029318, ("stone",), ("stones",)),
    ("ml", "volume", 0.001, ("milliliter", "millilitre"), ("밀리리터", "㎖")),
    ("l", "volume", 1.0, ("liter", "litre"), ("리터", "\u2113")),
    ("m3", "volume", 1000.0, ("cubic meter", "cubic metre"), ("m³", "세제곱미터")),
    ("tsp", "volume", 0.00492892159375, ("teaspoon",), ("티스푼",)),
    ("tbsp", "volume", 0.01478676478125, ("tablespoon",), ("테이블스푼",)),
    ("cup", "volume", 0.2365882365, ("cup", "us cup"), ("컵",)),
    ("fl oz", "volume", 0.0295735295625, ("fluid ounce", "us fluid ounce"), ("floz",)),
    ("pt", "volume", 0.473176473, ("pint", "us pint"), ("파인트",)),
    ("qt", "volume", 0.946352946, ("quart", "us quart"), ("쿼트",)),
    ("gal", "volume", 3.785411784, ("gallon", "us gallon"), ("갤런",)),
    ("imp gal", "volume", 4.54609, ("imperial gallon", "uk gallon"), ()),
    ("m/s", "speed", 1.0, ("meter per second", "metre per second"), ("mps", "초속")),
    (
        "km/h",
        "speed",
        1000.0 / 3600.0,
        ("kilometer per hour", "kilometre per hour"),
        ("kmh", "kph", "km/hr", "시속"),
    ),
    ("mph", "speed", 1609.344 / 3600.0, ("mile per hour",), ("mi/h",)),
    ("kn", "speed", 1852.0 / 3600.0, ("knot",), ("kt", "kts", "노트")),
    ("ft/s", "speed", 0.3048, ("foot per second",), ("feet per second", "fps")),
)

_TEMPERATURES: tuple[tuple[Unit, tuple[str, ...]], ...] = (
    (
        Unit("°C", "temperature", lambda c: c + 273.15, lambda k: k - 273.15),
        ("c", "°c", "℃", "celsius", "centigrade", "degree celsius", "degrees celsius", "섭씨"),
    ),
    (
        Unit(
            "°F",
            "temperature",
            lambda f: (f - 32.0) * 5.0 / 9.0 + 273.15,
            lambda k: (k - 273.15) * 9.0 / 5.0 + 32.0,
        ),
        ("f", "°f", "℉", "fahrenheit", "degree fahrenheit", "degrees fahrenheit", "화씨"),
    ),
    (Unit("K", "temperature", lambda k: k, lambda k: k), ("k", "kelvin", "kelvins", "켈빈")),
)


def _plural(name: str) -> str:
    """English plural of a unit name: the first word takes the "s" ("miles per hour")."""
    head, _, tail = name.partition(" per ")
    if head.endswith(("inch",)):
        head += "es"
    elif head.endswith("foot"):
        head = head[:-4] + "feet"
    elif not head.endswith("s"):
        head += "s"
    return f"{head} per {tail}" if tail else head


def _build_aliases() -> Mapping[str, Unit]:
    aliases: dict[str, Unit] = {}
    for symbol, quantity, factor, names, others in _LINEAR:
        unit = _linear(symbol, quantity, factor)
        keys = [symbol, *others]
        for name in names:
            keys += [name, _plural(name)]
        for key in keys:
            aliases[_normalise(key)] = unit
    for unit, keys in _TEMPERATURES:
        for key in keys:
            aliases[_normalise(key)] = unit
    return MappingProxyType(aliases)


def _normalise(name: str) -> str:
    """Lower case, single spaces, no trailing dot; "degrees" in front of C/F/K is optional."""
    name = " ".join(name.lower().replace("degrees ", "degree ").split()).rstrip(".")
    if name.startswith("degree ") and name[7:] in ("c", "f", "k"):
        name = name[7:]
    return name


_ALIASES: Final = _build_aliases()

QUANTITIES: Final = ("length", "mass", "volume", "speed", "temperature")


def find_unit(name: str) -> Unit | None:
    """The unit called ``name`` (symbol, English name or plural, Korean name), if known."""
    return _ALIASES.get(_normalise(name))


def _round(value: float) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))
    return round(value, max(digits, 0)) if digits > 0 else float(round(value, digits))


def convert(value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    """Convert and describe the result; errors are returned, not raised (like every tool)."""
    source, target = find_unit(from_unit), find_unit(to_unit)
    base: dict[str, Any] = {"value": value, "from_unit": from_unit, "to_unit": to_unit}
    unknown = [name for name, unit in ((from_unit, source), (to_unit, target)) if unit is None]
    if unknown:
        return {
            **base,
            "success": False,
            "error": f"unknown unit {unknown[0]!r} (known: {', '.join(QUANTITIES)} units)",
        }
    assert source is not None and target is not None
    if source.quantity != target.quantity:
        return {
            **base,
            "success": False,
            "error": f"cannot convert {source.quantity} ({source.symbol}) "
            f"to {target.quantity} ({target.symbol})",
        }
    if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
        return {**base, "success": False, "error": f"value must be at most {MAX_ABS_VALUE:g}"}
    in_base = source.to_base(value)
    if source.quantity == "temperature" and in_base < 0:
        return {**base, "success": False, "error": "that is below absolute zero"}
    result = _round(target.from_base(in_base))
    return {
        **base,
        "success": True,
        "quantity": source.quantity,
        "from_symbol": source.symbol,
        "to_symbol": target.symbol,
        "result": result,
    }


class UnitsArgs(BaseModel):
    value: float = Field(
        description="The number to convert, e.g. 10", allow_inf_nan=False, le=1e15, ge=-1e15
    )
    from_unit: str = Field(
        min_length=1, max_length=40, description='Unit of the value, e.g. "km", "°F", "pounds"'
    )
    to_unit: str = Field(
        min_length=1, max_length=40, description='Unit to convert to, e.g. "miles", "celsius"'
    )


def make_units_tool() -> BaseTool:
    def units(value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
        return convert(value, from_unit, to_unit)

    return StructuredTool.from_function(
        func=units,
        name="units",
        description=(
            "Convert a value between units of length, mass, volume, speed or temperature "
            "(e.g. 10 km to miles, 100 °F to °C, 2 cups to ml)."
        ),
        args_schema=UnitsArgs,
    )

"""The agent's tools (one module each) and the registry that serves them."""

from __future__ import annotations

import httpx

from agent_server.config import Settings
from agent_server.persistence.documents import DocumentStore
from agent_server.tools.calculator import make_calculator_tool
from agent_server.tools.registry import ToolRegistry
from agent_server.tools.search import make_search_tool
from agent_server.tools.units import make_units_tool
from agent_server.tools.weather import WeatherService, make_weather_tool


def build_tool_registry(
    settings: Settings, *, http_client: httpx.AsyncClient, documents: DocumentStore
) -> ToolRegistry:
    weather = WeatherService(
        http_client,
        geocoding_url=settings.weather_geocoding_url,
        forecast_url=settings.weather_forecast_url,
        timeout_seconds=settings.weather_timeout_seconds,
        cache_seconds=settings.weather_cache_seconds,
    )
    return ToolRegistry(
        [
            make_calculator_tool(),
            make_weather_tool(weather),
            make_search_tool(documents, default_k=settings.search_top_k),
            make_units_tool(),
        ]
    )


__all__ = ["ToolRegistry", "build_tool_registry"]

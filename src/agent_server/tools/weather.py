"""Current weather from Open-Meteo (geocoding, then forecast), over httpx.

Open-Meteo needs no key, which keeps the product usable with no accounts. The
service may be unreachable (no network, outage): the tool then returns a
structured error the model can explain instead of raising. Results are cached
per location for `WEATHER_CACHE_SECONDS` because weather changes slowly and the
same question tends to be asked many times.
"""

from __future__ import annotations

from typing import Any

import httpx
from cachetools import TTLCache
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

CACHE_SIZE = 512

# WMO weather interpretation codes, as documented by Open-Meteo.
WMO_CODES: dict[int, str] = {
    0: "Clear sky",
    1: "Mainly clear",
    2: "Partly cloudy",
    3: "Overcast",
    45: "Fog",
    48: "Depositing rime fog",
    51: "Light drizzle",
    53: "Moderate drizzle",
    55: "Dense drizzle",
    56: "Light freezing drizzle",
    57: "Dense freezing drizzle",
    61: "Slight rain",
    63: "Moderate rain",
    65: "Heavy rain",
    66: "Light freezing rain",
    67: "Heavy freezing rain",
    71: "Slight snowfall",
    73: "Moderate snowfall",
    75: "Heavy snowfall",
    77: "Snow grains",
    80: "Slight rain showers",
    81: "Moderate rain showers",
    82: "Violent rain showers",
    85: "Slight snow showers",
    86: "Heavy snow showers",
    95: "Thunderstorm",
    96: "Thunderstorm with slight hail",
    99: "Thunderstorm with heavy hail",
}
CURRENT_FIELDS = (
    "temperature_2m,apparent_temperature,relative_humidity_2m,weather_code,wind_speed_10m"
)


class WeatherArgs(BaseModel):
    location: str = Field(
        min_length=1, max_length=200, description="City or place name, e.g. 'Seoul' or 'Paris, FR'"
    )


class WeatherService:
    """Looks up current conditions; owns the per-location cache."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        geocoding_url: str,
        forecast_url: str,
        timeout_seconds: float,
        cache_seconds: float,
    ) -> None:
        self._client = client
        self._geocoding_url = geocoding_url
        self._forecast_url = forecast_url
        self._timeout = timeout_seconds
        self._cache: TTLCache[str, dict[str, Any]] | None = (
            TTLCache(maxsize=CACHE_SIZE, ttl=cache_seconds) if cache_seconds > 0 else None
        )

    async def current(self, location: str) -> dict[str, Any]:
        """Never raises: failures come back as `{"success": False, "error": ...}`."""
        location = " ".join(location.split())
        key = location.lower()
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        try:
            result = await self._lookup(location)
        except httpx.TimeoutException:
            return _error(location, "the weather service did not answer in time")
        except httpx.HTTPStatusError as exc:
            return _error(location, f"the weather service answered HTTP {exc.response.status_code}")
        except httpx.HTTPError:
            return _error(location, "the weather service is unreachable")
        except (ValueError, KeyError, TypeError, IndexError):
            return _error(location, "the weather service sent a reply I could not read")
        if result["success"] and self._cache is not None:
            self._cache[key] = result
        return result

    async def _lookup(self, location: str) -> dict[str, Any]:
        geo = await self._client.get(
            self._geocoding_url,
            params={"name": location, "count": 1, "language": "en", "format": "json"},
            timeout=self._timeout,
        )
        geo.raise_for_status()
        places = geo.json().get("results") or []
        if not places:
            return _error(location, f"no place called {location!r} was found")
        place = places[0]
        forecast = await self._client.get(
            self._forecast_url,
            params={
                "latitude": place["latitude"],
                "longitude": place["longitude"],
                "current": CURRENT_FIELDS,
                "wind_speed_unit": "kmh",
                "timezone": "auto",
            },
            timeout=self._timeout,
        )
        forecast.raise_for_status()
        current = forecast.json()["current"]
        name = ", ".join(str(p) for p in (place.get("name"), place.get("country")) if p)
        return {
            "success": True,
            "location": name or location,
            "latitude": place["latitude"],
            "longitude": place["longitude"],
            "temperature_c": current["temperature_2m"],
            "feels_like_c": current.get("apparent_temperature"),
            "humidity_pct": current.get("relative_humidity_2m"),
            "wind_speed_kmh": current.get("wind_speed_10m"),
            "conditions": WMO_CODES.get(int(current.get("weather_code", -1)), "Unknown"),
            "observed_at": current.get("time"),
        }


def _error(location: str, message: str) -> dict[str, Any]:
    return {"success": False, "location": location, "error": message}


def make_weather_tool(service: WeatherService) -> BaseTool:
    async def weather(location: str) -> dict[str, Any]:
        return await service.current(location)

    return StructuredTool.from_function(
        coroutine=weather,
        name="weather",
        description=(
            "Get the current weather (temperature, feels-like, humidity, wind, conditions) "
            "for a city or place."
        ),
        args_schema=WeatherArgs,
    )

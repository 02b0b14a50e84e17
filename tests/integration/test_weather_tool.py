"""The weather tool over real HTTP: our API → offline model → tool → a local Open-Meteo stub."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from agent_server.api.app import create_app
from agent_server.tools.weather import WeatherService
from tests.conftest import UNREACHABLE_URL, make_settings
from tests.support.servers import serve_in_thread
from tests.support.weather_stub import WeatherStub, weather_stub


@pytest.fixture
def stub() -> Iterator[WeatherStub]:
    with weather_stub() as running:
        yield running


@pytest.fixture
async def weather_client(tmp_path: Path, stub: WeatherStub) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        tmp_path,
        weather_geocoding_url=stub.geocoding_url,
        weather_forecast_url=stub.forecast_url,
    )
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            yield client


def geocode_calls(stub: WeatherStub) -> list[str]:
    return [c for c in stub.calls if c.startswith("geocode:")]


async def ask(client: httpx.AsyncClient, message: str) -> dict[str, object]:
    r = await client.post("/api/chat/message", json={"message": message})
    assert r.status_code == 200, r.text
    return r.json()


# --- through the API ---------------------------------------------------------------------


async def test_weather_question_is_answered_from_the_service(
    weather_client: httpx.AsyncClient, stub: WeatherStub
) -> None:
    body = await ask(weather_client, "weather in Seoul")
    assert body["tools_used"] == ["weather"]
    response = str(body["response"])
    assert "Seoul" in response
    assert "12.3" in response
    assert "Partly cloudy" in response
    assert body["degraded"] is False
    assert geocode_calls(stub) == ["geocode:Seoul"]
    assert [c for c in stub.calls if c.startswith("forecast:")] == ["forecast:37.566"]


async def test_repeated_question_is_served_from_the_cache(
    weather_client: httpx.AsyncClient, stub: WeatherStub
) -> None:
    first = await ask(weather_client, "weather in Seoul")
    calls_after_first = len(stub.calls)
    second = await ask(weather_client, "What's the weather in seoul?")
    assert second["tools_used"] == ["weather"]
    assert "12.3" in str(second["response"])
    assert len(stub.calls) == calls_after_first, stub.calls
    assert geocode_calls(stub) == ["geocode:Seoul"]
    assert first["response"] == second["response"]


async def test_unknown_place_is_explained(
    weather_client: httpx.AsyncClient, stub: WeatherStub
) -> None:
    body = await ask(weather_client, "weather in Atlantis")
    assert body["tools_used"] == ["weather"]
    response = str(body["response"]).lower()
    assert "atlantis" in response
    assert "no place" in response and "found" in response
    # A miss is not cached: asking again asks the service again.
    await ask(weather_client, "weather in Atlantis")
    assert geocode_calls(stub) == ["geocode:Atlantis", "geocode:Atlantis"]


async def test_unreachable_service_is_explained_not_a_5xx(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # weather URLs point at a closed local port
    assert settings.weather_geocoding_url == UNREACHABLE_URL
    with serve_in_thread(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            body = await ask(client, "weather in Seoul")
    assert body["tools_used"] == ["weather"]
    response = str(body["response"])
    assert "Seoul" in response
    assert "unreachable" in response
    assert "12.3" not in response


async def test_service_error_status_is_explained(tmp_path: Path) -> None:
    with weather_stub(fail_status=500) as failing:
        settings = make_settings(
            tmp_path,
            weather_geocoding_url=failing.geocoding_url,
            weather_forecast_url=failing.forecast_url,
        )
        with serve_in_thread(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                body = await ask(client, "weather in Seoul")
    assert body["tools_used"] == ["weather"]
    response = str(body["response"])
    assert "Seoul" in response
    assert "HTTP 500" in response


async def test_slow_service_times_out_with_an_explanation(tmp_path: Path) -> None:
    with weather_stub(delay_seconds=2.0) as slow:
        settings = make_settings(
            tmp_path,
            weather_geocoding_url=slow.geocoding_url,
            weather_forecast_url=slow.forecast_url,
            weather_timeout_seconds=0.3,
        )
        with serve_in_thread(create_app(settings)) as url:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                body = await ask(client, "weather in Seoul")
    assert body["tools_used"] == ["weather"]
    assert "did not answer in time" in str(body["response"])


async def test_weather_turn_is_in_history(weather_client: httpx.AsyncClient) -> None:
    body = await ask(weather_client, "weather in Paris")
    history = (await weather_client.get(f"/api/chat/history/{body['session_id']}")).json()
    [turn] = history["turns"]
    assert turn["tools_used"] == ["weather"]
    assert "Paris" in turn["response"] and "12.3" in turn["response"]


# --- WeatherService directly -------------------------------------------------------------


def service(
    client: httpx.AsyncClient, stub: WeatherStub, *, cache_seconds: float = 300.0
) -> WeatherService:
    return WeatherService(
        client,
        geocoding_url=stub.geocoding_url,
        forecast_url=stub.forecast_url,
        timeout_seconds=5.0,
        cache_seconds=cache_seconds,
    )


async def test_service_result_fields(stub: WeatherStub) -> None:
    async with httpx.AsyncClient() as client:
        result = await service(client, stub).current("Seoul")
    assert result == {
        "success": True,
        "location": "Seoul, South Korea",
        "latitude": 37.566,
        "longitude": 126.978,
        "temperature_c": 12.3,
        "feels_like_c": 10.1,
        "humidity_pct": 60,
        "wind_speed_kmh": 8.2,
        "conditions": "Partly cloudy",
        "observed_at": "2026-11-24T14:00",
    }


async def test_service_caches_per_normalised_location(stub: WeatherStub) -> None:
    async with httpx.AsyncClient() as client:
        weather = service(client, stub)
        first = await weather.current("Seoul")
        calls = len(stub.calls)
        assert calls == 2  # geocoding + forecast
        assert await weather.current("  seoul ") == first
        assert await weather.current("SEOUL") == first
        assert len(stub.calls) == calls
        await weather.current("Paris")
        assert len(stub.calls) == calls + 2


async def test_cache_seconds_zero_disables_caching(stub: WeatherStub) -> None:
    async with httpx.AsyncClient() as client:
        weather = service(client, stub, cache_seconds=0)
        first = await weather.current("Seoul")
        second = await weather.current("Seoul")
    assert first == second
    assert first["success"] is True
    assert geocode_calls(stub) == ["geocode:Seoul", "geocode:Seoul"]


async def test_failures_are_not_cached(stub: WeatherStub) -> None:
    async with httpx.AsyncClient() as client:
        weather = service(client, stub)
        stub.fail_status = 503
        failed = await weather.current("Seoul")
        assert failed == {
            "success": False,
            "location": "Seoul",
            "error": "the weather service answered HTTP 503",
        }
        stub.fail_status = None
        recovered = await weather.current("Seoul")
    assert recovered["success"] is True
    assert geocode_calls(stub) == ["geocode:Seoul", "geocode:Seoul"]


async def test_service_unreachable_returns_structured_error() -> None:
    async with httpx.AsyncClient() as client:
        weather = WeatherService(
            client,
            geocoding_url=UNREACHABLE_URL,
            forecast_url=UNREACHABLE_URL,
            timeout_seconds=2.0,
            cache_seconds=300,
        )
        result = await weather.current("Seoul")
    assert result == {
        "success": False,
        "location": "Seoul",
        "error": "the weather service is unreachable",
    }

"""A local stand-in for Open-Meteo's geocoding and forecast APIs.

Tests point the weather tool here so they never reach the internet; the stub
counts requests (to observe caching) and can be slowed down or made to fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.servers import serve_in_thread

PLACES = {
    "seoul": {"name": "Seoul", "country": "South Korea", "latitude": 37.566, "longitude": 126.978},
    "paris": {"name": "Paris", "country": "France", "latitude": 48.853, "longitude": 2.349},
}
CURRENT = {
    "time": "2026-11-24T14:00",
    "temperature_2m": 12.3,
    "apparent_temperature": 10.1,
    "relative_humidity_2m": 60,
    "weather_code": 2,
    "wind_speed_10m": 8.2,
}


@dataclass
class WeatherStub:
    base_url: str = ""
    delay_seconds: float = 0.0
    fail_status: int | None = None
    calls: list[str] = field(default_factory=list)

    @property
    def geocoding_url(self) -> str:
        return f"{self.base_url}/v1/search"

    @property
    def forecast_url(self) -> str:
        return f"{self.base_url}/v1/forecast"

    def app(self) -> Starlette:
        async def search(request: Request) -> JSONResponse:
            self.calls.append("geocode:" + request.query_params.get("name", ""))
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
            if self.fail_status:
                return JSONResponse({"error": True}, status_code=self.fail_status)
            place = PLACES.get(request.query_params.get("name", "").lower())
            return JSONResponse({"results": [place]} if place else {"generationtime_ms": 0.1})

        async def forecast(request: Request) -> JSONResponse:
            self.calls.append("forecast:" + request.query_params.get("latitude", ""))
            return JSONResponse({"current": CURRENT})

        return Starlette(routes=[Route("/v1/search", search), Route("/v1/forecast", forecast)])


@contextmanager
def weather_stub(
    *, delay_seconds: float = 0.0, fail_status: int | None = None
) -> Iterator[WeatherStub]:
    stub = WeatherStub(delay_seconds=delay_seconds, fail_status=fail_status)
    with serve_in_thread(stub.app()) as url:
        stub.base_url = url
        yield stub

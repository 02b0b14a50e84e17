"""Does each chain entry's provider actually serve it? (`agent-server models check`,
and the same check in the background at server start-up.)

One `GET {base_url}/models` per provider (the OpenAI-compatible listing that
OpenRouter, OpenAI, Ollama, vLLM and llama.cpp's server all answer), bounded by
`MODEL_CHECK_TIMEOUT_SECONDS`; each chain entry is then `found`, `not_served`,
`unreachable`, `auth_failed`, `no_key` (its key variable is unset) or `unknown`
(the provider answered something we cannot read). So an operator learns about a
retired free model before the users do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

from agent_server.config import Settings
from agent_server.llm.models_file import ModelsConfig, from_settings
from agent_server.llm.providers import Provider

log = logging.getLogger(__name__)

Status = Literal["found", "not_served", "unreachable", "auth_failed", "no_key", "unknown"]
PROBLEMS: frozenset[str] = frozenset({"not_served", "unreachable", "auth_failed", "no_key"})


@dataclass(frozen=True, slots=True)
class EntryCheck:
    provider: str
    model: str
    status: Status
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status not in PROBLEMS


@dataclass(frozen=True, slots=True)
class _Listing:
    status: Status
    ids: frozenset[str] = frozenset()
    detail: str = ""


async def _list_models(client: httpx.AsyncClient, provider: Provider) -> _Listing:
    if not provider.usable:
        return _Listing("no_key", detail=f"{provider.api_key_env} is not set")
    headers = {"Authorization": f"Bearer {provider.bearer()}", **provider.headers}
    try:
        response = await client.get(f"{provider.base_url}/models", headers=headers)
    except httpx.HTTPError as exc:
        return _Listing("unreachable", detail=type(exc).__name__)
    if response.status_code in (401, 403):
        return _Listing("auth_failed", detail=f"HTTP {response.status_code}")
    if response.status_code >= 500:
        return _Listing("unreachable", detail=f"HTTP {response.status_code}")
    if response.status_code != 200:
        return _Listing("unknown", detail=f"HTTP {response.status_code} from /models")
    try:
        data = response.json().get("data")
        ids = frozenset(str(item["id"]) for item in data)
    except (ValueError, AttributeError, TypeError, KeyError):
        return _Listing("unknown", detail="unreadable /models listing")
    return _Listing("found", ids)


async def check_models(config: ModelsConfig, *, request_timeout: float) -> list[EntryCheck]:
    """One listing per provider, concurrently; one result per chain entry, in order."""
    providers = list({item.provider.name: item.provider for item in config.chain}.values())
    async with httpx.AsyncClient(timeout=request_timeout, follow_redirects=True) as client:
        listings = await asyncio.gather(*(_list_models(client, p) for p in providers))
    by_name = {p.name: listing for p, listing in zip(providers, listings, strict=True)}
    results = []
    for item in config.chain:
        listing = by_name[item.provider.name]
        status: Status = listing.status
        if status == "found" and item.spec.id not in listing.ids:
            status = "not_served"
        results.append(EntryCheck(item.provider.name, item.spec.id, status, listing.detail))
    return results


def format_report(results: Sequence[EntryCheck]) -> str:
    width = max((len(f"{r.provider}/{r.model}") for r in results), default=10)
    lines = [
        f"{f'{r.provider}/{r.model}':<{width}}  {r.status}{f'  ({r.detail})' if r.detail else ''}"
        for r in results
    ]
    return "\n".join(lines)


async def startup_check(settings: Settings) -> list[EntryCheck]:
    """The check the server runs in the background: providers without a key are
    skipped (they are not in the chain), and one warning is logged per entry that will
    not answer. Never raises: it only informs."""
    try:
        config = from_settings(settings)
        usable = [item for item in config.chain if item.provider.usable]
        if not usable:
            return []
        config = ModelsConfig(config.providers, usable, config.source)
        async with asyncio.timeout(settings.model_check_timeout_seconds + 1):
            results = await check_models(
                config, request_timeout=settings.model_check_timeout_seconds
            )
    except Exception as exc:  # an informative check must never take the server down
        log.warning("model check did not complete: %s", type(exc).__name__)
        return []
    for result in results:
        if not result.ok:
            log.warning(
                "chain entry %s/%s will not answer: %s%s",
                result.provider,
                result.model,
                result.status,
                f" ({result.detail})" if result.detail else "",
            )
    return results

"""Who is calling: API keys → principal ids.

Keys come from `Authorization: Bearer <key>` or `X-API-Key`. A key is accepted
if it is listed in `AGENT_API_KEYS` (principal `env:<hash prefix>`) or stored,
unrevoked, in the database (principal `key:<id>`). Principal ids, never keys,
are what the rest of the system sees, stores and logs.

With no key configured anywhere the service is open and everything belongs to
the local principal; `ensure_safe_to_serve` refuses that on a non-loopback
address unless `AUTH_DISABLED` says so explicitly.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time

from cachetools import TTLCache
from starlette.requests import HTTPConnection

from agent_server.config import LOCAL_PRINCIPAL, Settings
from agent_server.errors import Unauthorized
from agent_server.persistence.api_keys import ApiKeyRepository, hash_key

log = logging.getLogger(__name__)

TOUCH_INTERVAL_SECONDS = 60.0
"""`last_used_at` is written at most this often per key, not on every request."""


class UnsafeConfiguration(RuntimeError):
    """Refusing to serve without authentication on a reachable address."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def presented_key(connection: HTTPConnection) -> str | None:
    authorization = connection.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return connection.headers.get("x-api-key") or None


class Authenticator:
    def __init__(self, settings: Settings, keys: ApiKeyRepository) -> None:
        self._disabled = settings.auth_disabled
        # Hash the env keys once; compare hashes in constant time.
        hashes = [hash_key(key.get_secret_value()) for key in settings.agent_api_keys]
        self._env_keys = {digest: f"env:{digest[:12]}" for digest in hashes}
        self._keys = keys
        self._cache_seconds = settings.auth_cache_seconds
        ttl = self._cache_seconds or 1.0
        self._lookups: TTLCache[str, str | None] = TTLCache(4096, ttl)
        self._db_has_keys: TTLCache[str, bool] = TTLCache(1, ttl)
        self._touched: TTLCache[str, float] = TTLCache(4096, TOUCH_INTERVAL_SECONDS)

    async def keys_configured(self) -> bool:
        if self._env_keys:
            return True
        cached = self._db_has_keys.get("any") if self._cache_seconds else None
        if cached is None:
            cached = await self._keys.count_active() > 0
            self._db_has_keys["any"] = cached
        return cached

    async def ensure_safe_to_serve(self, host: str) -> None:
        if self._disabled or is_loopback(host):
            if not self._disabled and not await self.keys_configured():
                log.warning(
                    "no API keys configured: serving without authentication on %s (loopback only)",
                    host,
                )
            return
        if not await self.keys_configured():
            raise UnsafeConfiguration(
                f"refusing to listen on {host} without API keys: create one with "
                "`agent-server keys create --name NAME`, set AGENT_API_KEYS, listen on "
                "127.0.0.1, or set AUTH_DISABLED=true to serve openly on purpose"
            )

    async def principal(self, connection: HTTPConnection) -> str:
        if self._disabled:
            return LOCAL_PRINCIPAL
        key = presented_key(connection)
        if key is None:
            if not await self.keys_configured():
                return LOCAL_PRINCIPAL
            raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
        digest = hash_key(key)
        for env_hash, principal in self._env_keys.items():
            if hmac.compare_digest(env_hash, digest):
                return principal
        if self._cache_seconds and digest in self._lookups:
            principal = self._lookups[digest]
        else:
            info = await self._keys.lookup(key)
            principal = info.principal if info else None
            self._lookups[digest] = principal
            if info and info.id not in self._touched:
                self._touched[info.id] = time.time()
                await self._keys.touch(info.id)
        if principal is None:
            raise Unauthorized("invalid or revoked API key")
        return principal

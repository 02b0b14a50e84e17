"""Who is calling: API keys → principal ids, and whether a keyless caller may come in.

Keys come from `Authorization: Bearer <key>` or `X-API-Key`. A key is accepted
if it is listed in `AGENT_API_KEYS` (principal `env:<hash prefix>`) or stored,
unrevoked, in the database (principal `key:<id>`). Principal ids, never keys,
are what the rest of the system sees, stores and logs.

Keyless ("open") mode is a start-up decision, not a per-request one:

- `AUTH_DISABLED=true`: every caller is the local principal, on any address.
- keys configured (env or database) when the app starts: every caller needs one,
  for the life of the process. Revoking the last database key leaves a server
  that nobody can use, never one that anybody can use. A server started without
  keys latches into this mode too as soon as a key appears.
- no keys at all: callers without a key are the local principal, but only on a
  connection that arrived on a loopback address. The app cannot see where its
  ASGI server binds (uvicorn binds after the lifespan has started; gunicorn binds
  in another process), so the check reads the local address of each request's
  own connection (`scope["server"]`, the socket's `getsockname()`): correct under
  `agent-server serve`, `uvicorn --factory … --host 0.0.0.0`, gunicorn workers
  and the tests' threads alike. Anything else gets 403 `loopback_only`, and so does
  a keyless request that names a non-loopback `Host` (a web page that rebinds its
  DNS name to 127.0.0.1 would otherwise read everything) or carries `Forwarded` /
  `X-Forwarded-For` (it came through a proxy, so from someone else).

`agent-server serve` also refuses to start on a non-loopback `HOST` with no keys,
so the common mistake fails loudly before the socket opens.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from enum import StrEnum
from typing import Any

from cachetools import TTLCache
from starlette.requests import HTTPConnection

from agent_server.config import LOCAL_PRINCIPAL, Settings
from agent_server.errors import LoopbackOnly, Unauthorized
from agent_server.persistence.api_keys import ApiKeyRepository, hash_key

log = logging.getLogger(__name__)

TOUCH_INTERVAL_SECONDS = 60.0
"""`last_used_at` is written at most this often per key, not on every request."""
REFUSED_ADDRESSES_LOGGED = 64
"""Distinct reasons (addresses, hosts) a keyless server logs a refusal for, once each."""


class UnsafeConfiguration(RuntimeError):
    """Refusing to serve without authentication on a reachable address."""


class AuthMode(StrEnum):
    DISABLED = "disabled"
    KEYED = "keyed"
    LOOPBACK_OPEN = "loopback_open"


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 on a dual-stack socket
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def arrived_locally(server: Any) -> bool:
    """Whether the connection's local end (ASGI `scope["server"]`) is loopback.

    `None` or a port of `None` is a Unix domain socket (or a server that does not
    say): reachable only through the file system, so local.
    """
    if server is None:
        return True
    host, port = server[0], server[1]
    return port is None or is_loopback(str(host))


def local_caller(connection: HTTPConnection) -> tuple[bool, str]:
    """Whether a keyless request is from this machine, and if not, why not."""
    server = connection.scope.get("server")
    if not arrived_locally(server):
        return False, f"arrived on {server[0]}"
    try:  # Starlette's URL: the Host header (ports, [IPv6]), else the server address
        host = connection.url.hostname or ""
    except ValueError:  # a malformed Host, e.g. "[::1"
        host = "?"
    if host and not is_loopback(host):
        return False, f"names Host {host[:64]!r} (DNS rebinding?)"
    if "forwarded" in connection.headers or "x-forwarded-for" in connection.headers:
        return False, "came through a proxy (Forwarded / X-Forwarded-For)"
    return True, ""


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
        self._keyed = bool(self._env_keys)
        """Latched: once keys were seen, a keyless request never gets in again."""
        self._refused_logged: set[str] = set()

    @property
    def mode(self) -> AuthMode:
        if self._disabled:
            return AuthMode.DISABLED
        return AuthMode.KEYED if self._keyed else AuthMode.LOOPBACK_OPEN

    async def _keys_configured(self, *, starting: bool = False) -> bool:
        if self._keyed:
            return True
        cached = self._db_has_keys.get("any") if self._cache_seconds else None
        if cached is None:
            cached = await self._keys.count_active() > 0
            self._db_has_keys["any"] = cached
        if cached:
            self._keyed = True
            if not starting:
                log.warning("API keys now exist: from now on every /api request needs a key")
        return cached

    async def ensure_safe_to_serve(self, host: str) -> None:
        """Refuse a configured non-loopback `host` when no key exists (and auth is on)."""
        if self._disabled or await self._keys_configured(starting=True) or is_loopback(host):
            return
        raise UnsafeConfiguration(
            f"refusing to listen on {host} without API keys: create one with "
            "`agent-server keys create --name NAME`, set AGENT_API_KEYS, listen on "
            "127.0.0.1, or set AUTH_DISABLED=true to serve openly on purpose"
        )

    async def start(self, host: str) -> AuthMode:
        """Decide the mode once, at start-up, and log it (once)."""
        await self.ensure_safe_to_serve(host)
        mode = self.mode
        if mode is AuthMode.DISABLED:
            log.warning("AUTH_DISABLED=true: serving without authentication on every address")
        elif mode is AuthMode.KEYED:
            log.info("API keys configured: every /api request needs a key")
        else:
            log.warning(
                "no API keys configured: requests without a key are served only on "
                "connections to a loopback address, with a loopback Host and no proxy "
                "headers; anything else gets 403 loopback_only"
            )
        return mode

    async def principal(self, connection: HTTPConnection) -> str:
        if self._disabled:
            return LOCAL_PRINCIPAL
        key = presented_key(connection)
        if key is None:
            if await self._keys_configured():
                raise Unauthorized("an API key is required (Authorization: Bearer <key>)")
            local, why = local_caller(connection)
            if not local:
                self._log_refusal(why)
                raise LoopbackOnly(
                    "this server has no API keys and serves without one only to local "
                    "callers (a loopback connection and Host, no proxy); its operator must "
                    "create a key (agent-server keys create)"
                )
            return LOCAL_PRINCIPAL
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

    def _log_refusal(self, why: str) -> None:
        if why in self._refused_logged or len(self._refused_logged) >= REFUSED_ADDRESSES_LOGGED:
            return
        self._refused_logged.add(why)
        log.error(
            "refused a keyless request that %s: no API keys are configured, so only local "
            "callers are served; create a key or set AUTH_DISABLED=true",
            why,
        )

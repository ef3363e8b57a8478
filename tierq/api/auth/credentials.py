"""Credentials to a Principal: API keys (looked up by the hash of the presented secret, cached
for ``auth_cache_s``) and JWT bearer tokens.

What must stay true: a revoked or expired key stops working on every replica within
``auth_cache_s`` (the cache holds a key's record, never a verdict, and re-reads it once older);
an unknown secret is cached as unknown for as long, so guessing costs no database read each;
``last_used_at`` is recorded in batches by ``KeyUsage``, never per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import orjson
from aiohttp import web

from tierq.api.auth import keys as key_format
from tierq.api.auth.jwt import InvalidToken, JwtVerifier
from tierq.api.permissions import Principal
from tierq.config import Settings
from tierq.config.checks import parse_rate_limits
from tierq.engine.service import Service
from tierq.model import ROLES, ApiKey
from tierq.storage.keys import KeyStore

log = logging.getLogger("tierq.api.auth")
# The cache forgets everything once it holds this many secrets (a flood of random keys).
CACHE_LIMIT = 50_000
USAGE_FLUSH_S = 5.0


class Unauthenticated(Exception):
    """No usable credential. The reason goes to the log and the audit log; the client gets the
    same answer whatever it is."""


def presented(request: web.Request) -> str | None:
    """The credential of a request: ``X-API-Key``, or ``Authorization: Bearer``."""
    given = request.headers.get("X-API-Key")
    if given:
        return given.strip()
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def key_principal(key: ApiKey) -> Principal:
    limits = None
    if key.rate_limits:
        limits = parse_rate_limits(orjson.loads(key.rate_limits), "rate_limits")
    return Principal(key.tenant, key.role, key.id, key.id, limits)


class Authenticator:
    def __init__(self, settings: Settings, keys: KeyStore, jwt: JwtVerifier | None) -> None:
        self._mode = settings.auth
        self._ttl = settings.auth_cache_s
        self._keys = keys
        self.jwt = jwt
        # secret hash -> (record or None, principal or None, read at (monotonic))
        self._cache: dict[str, tuple[ApiKey | None, Principal | None, float]] = {}
        self._reads: dict[str, asyncio.Future[ApiKey | None]] = {}
        self._live: tuple[bool, float] = (False, -self._ttl)
        self.used: dict[str, float] = {}  # key id -> last use (wall clock), for KeyUsage

    async def required(self) -> bool:
        """Whether a credential is needed now (auto: once a live key exists or JWT is on)."""
        if self._mode == "off":
            return False
        if self._mode == "required" or self.jwt is not None:
            return True
        any_live, read_at = self._live
        if time.monotonic() - read_at >= self._ttl:
            any_live = await self._keys.count_live(time.time()) > 0
            self._live = (any_live, time.monotonic())
        return any_live

    async def authenticate(self, credential: str) -> Principal:
        if credential.startswith("tq_"):
            return await self._by_key(credential)
        if self.jwt is None:
            raise Unauthenticated("not an API key, and JWT is not configured")
        try:
            claims = await self.jwt.verify(credential)
        except InvalidToken as exc:
            raise Unauthenticated(f"JWT refused: {exc}") from None
        role = claims.get(self.jwt.role_claim)
        tenant = claims.get(self.jwt.tenant_claim)
        if role not in ROLES:
            raise Unauthenticated(f"JWT claim {self.jwt.role_claim!r} is not a role")
        if not isinstance(tenant, str) or not tenant:
            raise Unauthenticated(f"JWT claim {self.jwt.tenant_claim!r} names no tenant")
        subject = claims.get("sub")
        return Principal(tenant, str(role), f"jwt:{subject if subject else '-'}")

    async def _by_key(self, secret: str) -> Principal:
        # The shape and checksum first: a typo or a random string costs no lookup (and is
        # never cached). A hash found in the cache was checked when it was cached.
        digest = key_format.hash_key(secret)
        if digest not in self._cache and not key_format.well_formed(secret):
            raise Unauthenticated("malformed API key")
        return await self.by_hash(digest)

    async def by_hash(self, digest: str) -> Principal:
        """The key whose secret hashes to ``digest`` (a dashboard session holds the hash)."""
        cached = self._cache.get(digest)
        if cached is not None and time.monotonic() - cached[2] < self._ttl:
            key, principal = cached[0], cached[1]
        else:
            key = await self._read(digest)
            principal = None if key is None else key_principal(key)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[digest] = (key, principal, time.monotonic())
        if key is None or principal is None:
            raise Unauthenticated("unknown API key")
        now = time.time()
        if not key.usable(now, previous=key.secret_hash != digest):
            raise Unauthenticated(f"API key {key.id} is revoked, expired or rotated out")
        self.used[key.id] = now
        return principal

    async def _read(self, digest: str) -> ApiKey | None:
        """One store read per secret at a time, however many requests present it at once."""
        pending = self._reads.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ApiKey | None] = asyncio.get_running_loop().create_future()
        self._reads[digest] = future
        try:
            key = await self._keys.find(digest)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters (if any) get it too
            raise
        finally:
            self._reads.pop(digest, None)
        future.set_result(key)
        return key

    def forget(self, hashes: Sequence[str | None]) -> None:
        """Drop cached records at once (this replica revoked or rotated the key)."""
        for digest in hashes:
            if digest:
                self._cache.pop(digest, None)
        self._live = (False, -self._ttl)


class KeyUsage(Service):
    """Writes keys' last use in one statement every few seconds (and at stop)."""

    name = "key-usage"

    def __init__(self, authenticator: Authenticator, keys: KeyStore) -> None:
        super().__init__()
        self._auth = authenticator
        self._keys = keys

    async def run_once(self) -> None:
        used, self._auth.used = self._auth.used, {}
        if not used:
            return
        try:
            await self._keys.touch_many(sorted(used.items()))
        except BaseException:
            # Kept for the next step (newer uses of the same key win).
            self._auth.used = {**used, **self._auth.used}
            raise

    def next_wait(self) -> float:
        return USAGE_FLUSH_S

    async def drain(self) -> None:
        await self.run_once()

"""JWT bearer tokens, verified with PyJWT.

What must stay true: the accepted algorithms come from settings only (never from the token's
header; ``none`` is never among them, and HMAC and public-key algorithms are never mixed, so a
public key can never be used as an HMAC secret); ``iss``, ``aud`` and ``exp`` are required and
checked, with a small leeway for clock skew. Keys come from a static PEM or secret, or from a
JWKS URL: fetched at start, again for an unknown ``kid`` at most once a minute, and the keys
already fetched keep working while the endpoint is down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tierq.config import Settings

log = logging.getLogger("tierq.api.auth")
JWKS_REFETCH_S = 60.0
JWKS_TIMEOUT_S = 5.0


class InvalidToken(Exception):
    """The token cannot be trusted. The message is for the log, never for the client."""


class JwtVerifier:
    def __init__(self, settings: Settings) -> None:
        self._algorithms = list(settings.jwt_algorithms)
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_s
        self.role_claim = settings.jwt_role_claim
        self.tenant_claim = settings.jwt_tenant_claim
        self._jwks_url = settings.jwt_jwks_url
        self._static: Any = None
        if settings.jwt_key:
            key = settings.jwt_key
            hmac = all(a.startswith("HS") for a in self._algorithms)
            # A PEM is parsed once here: a malformed key fails start-up, not every request.
            self._static = key.encode() if hmac else load_pem_public_key(key.encode())
        self._keys: dict[str, Any] = {}  # kid -> key, from the JWKS
        self._fetched_at = -JWKS_REFETCH_S
        self._fetching: asyncio.Lock | None = None

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; InvalidToken for anything short of a valid token."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from None
        if header.get("alg") not in self._algorithms:
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not accepted")
        key = self._static if self._static is not None else await self._jwks_key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        return claims

    async def _jwks_key(self, kid: Any) -> Any:
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("token names no kid")
        if kid not in self._keys:
            await self.refresh(force=False)
        try:
            return self._keys[kid]
        except KeyError:
            raise InvalidToken(f"unknown kid {kid!r}") from None

    async def refresh(self, force: bool = True) -> None:
        """Fetch the JWKS (at most once a minute unless ``force``); keep the cached keys when
        the endpoint fails."""
        if not self._jwks_url:
            return
        if self._fetching is None:
            self._fetching = asyncio.Lock()
        async with self._fetching:
            if not force and time.monotonic() - self._fetched_at < JWKS_REFETCH_S:
                return
            self._fetched_at = time.monotonic()
            try:
                timeout = aiohttp.ClientTimeout(total=JWKS_TIMEOUT_S)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as session,
                    session.get(self._jwks_url, allow_redirects=False) as resp,
                ):
                    resp.raise_for_status()
                    document = await resp.json(content_type=None)
                keys = {
                    k.key_id: k.key
                    for k in jwt.PyJWKSet.from_dict(document).keys
                    if k.key_id and (k.algorithm_name in self._algorithms or not k.algorithm_name)
                }
            except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
                log.warning(
                    "JWKS %s could not be fetched (%s); keeping %d cached keys",
                    self._jwks_url,
                    exc,
                    len(self._keys),
                )
                return
            self._keys = keys

"""Rate limits by route class, per tenant and per key (GCRA, storage/ratelimit.py), their
headers, and the cap on one tenant's requests in progress.

Buckets: ``tenant`` (the tenant's limit: ``rate_tenants`` or the default) and ``key`` (the
key's own limits, or the default). Both must allow a call. The headers follow the IETF
httpapi draft (``RateLimit-Policy``, ``RateLimit``) and the common ``X-RateLimit-*`` trio, and
describe the tightest bucket.
"""

from __future__ import annotations

import functools
import json
import math
import time

from tierq.api.permissions import Principal, RateClass
from tierq.config import Settings
from tierq.config.checks import parse_rate_limits
from tierq.storage.ratelimit import Bucket, Decision, RateLimiter

_NAMES = ("tenant", "key")
MEMO_LIMIT = 10_000


class RateGate:
    def __init__(self, settings: Settings, limiter: RateLimiter) -> None:
        self.limiter = limiter
        self._defaults: dict[str, tuple[float, int]] = {}
        for kind in RateClass:
            rate = getattr(settings, f"rate_{kind}_per_s")
            burst = getattr(settings, f"rate_{kind}_burst")
            if rate > 0:
                self._defaults[kind] = (rate, burst or max(1, round(rate)))
        self._tenants = {
            tenant: parse_rate_limits(limits, f"rate_tenants.{tenant}")
            for tenant, limits in (json.loads(settings.rate_tenants or "{}")).items()
        }
        self._max_inflight = settings.tenant_max_inflight
        self._inflight: dict[str, int] = {}
        self._buckets: dict[tuple[str, str, RateClass], list[Bucket]] = {}

    def buckets(self, principal: Principal, kind: RateClass) -> list[Bucket]:
        """The buckets a call of ``principal`` on a ``kind`` route passes (memoised: the
        same few principals call again and again; a key's limits never change)."""
        memo = (principal.tenant, principal.actor, kind)
        found = self._buckets.get(memo)
        if found is None:
            if len(self._buckets) >= MEMO_LIMIT:
                self._buckets.clear()
            found = self._buckets[memo] = self._make_buckets(principal, kind)
        return found

    def _make_buckets(self, principal: Principal, kind: RateClass) -> list[Bucket]:
        out = []
        tenant = self._tenants.get(principal.tenant, {}).get(kind) or self._defaults.get(kind)
        if tenant is not None:
            out.append(Bucket(f"t:{principal.tenant}:{kind}", *tenant))
        own = (principal.rate_limits or {}).get(kind) or self._defaults.get(kind)
        if own is not None:
            out.append(Bucket(f"k:{principal.actor}:{kind}", *own))
        return out

    async def check(
        self, principal: Principal, kind: RateClass, cost: int
    ) -> tuple[Decision, list[Bucket]]:
        buckets = self.buckets(principal, kind)
        return await self.limiter.acquire(buckets, max(1, cost), time.time()), buckets

    # ---- requests in progress, per tenant (this process) -----------------------------------

    def enter(self, tenant: str) -> bool:
        """Count one more request of ``tenant`` in progress; False (nothing counted) when the
        tenant is at its cap."""
        if not self._max_inflight:
            return True
        current = self._inflight.get(tenant, 0)
        if current >= self._max_inflight:
            return False
        self._inflight[tenant] = current + 1
        return True

    def inflight(self, tenant: str) -> int:
        """Requests of ``tenant`` in progress in this process (counted only under a cap)."""
        return self._inflight.get(tenant, 0)

    def leave(self, tenant: str) -> None:
        if not self._max_inflight:
            return
        left = self._inflight.get(tenant, 1) - 1
        if left > 0:
            self._inflight[tenant] = left
        else:
            self._inflight.pop(tenant, None)


@functools.lru_cache(maxsize=1024)
def _policy(kind: RateClass, limits: tuple[tuple[float, int], ...]) -> str:
    """The RateLimit-Policy of a route class's buckets (a few distinct ones per deployment)."""
    policies = []
    for name, (per_second, burst) in zip(_NAMES, limits, strict=False):
        window = max(1, math.ceil(burst / per_second))
        policies.append(f'"{kind}-{name}";q={burst};w={window}')
    return ", ".join(policies)


def headers(decision: Decision, buckets: list[Bucket], kind: RateClass) -> dict[str, str]:
    """Rate-limit headers for a decision over ``buckets`` (none: no headers)."""
    if not buckets:
        return {}
    policy = _policy(kind, tuple((b.per_second, b.burst) for b in buckets))
    tight = _NAMES[decision.bucket] if decision.bucket < len(_NAMES) else _NAMES[0]
    reset = max(0, math.ceil(decision.reset_s))
    out = {
        "RateLimit-Policy": policy,
        "RateLimit": f'"{kind}-{tight}";r={decision.remaining};t={reset}',
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(reset),
    }
    if not decision.allowed:
        out["Retry-After"] = str(max(1, math.ceil(decision.retry_after_s)))
    return out

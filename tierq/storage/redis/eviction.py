"""Start-up check that Redis will never evict queue keys.

Queue keys carry no TTL, so ``volatile-*`` policies never touch them; ``allkeys-*`` policies
would silently drop tasks under memory pressure. The record tier would still have them, but
the dispatch tier would not know until the next recovery, so we refuse to start instead.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("tierq.storage.redis")


class EvictionPolicyError(RuntimeError):
    """Redis is configured to evict keys that have no TTL."""


def judge_policy(policy: str) -> None:
    """Raise EvictionPolicyError unless ``policy`` keeps keys without a TTL."""
    if policy == "noeviction" or policy.startswith("volatile-"):
        return
    raise EvictionPolicyError(
        f"Redis maxmemory-policy is {policy!r}: it may evict tierq queue keys (they have no "
        "TTL) and lose queued tasks. Set maxmemory-policy to 'noeviction' (recommended) or a "
        "'volatile-*' policy, e.g. `redis-cli CONFIG SET maxmemory-policy noeviction` and in "
        "redis.conf."
    )


async def check_eviction_policy(client: Any) -> str | None:
    """Read ``maxmemory-policy`` and judge it; return it, or None when CONFIG is unavailable.

    Managed Redis services often disable or rename CONFIG; then we can only warn.
    """
    from redis.exceptions import ResponseError

    try:
        reply = await client.config_get("maxmemory-policy")
    except ResponseError as exc:
        log.warning("cannot read Redis maxmemory-policy (%s); make sure it is noeviction", exc)
        return None
    raw = reply.get("maxmemory-policy", reply.get(b"maxmemory-policy"))
    if raw is None:
        log.warning("Redis did not report maxmemory-policy; make sure it is noeviction")
        return None
    policy = raw.decode() if isinstance(raw, bytes) else str(raw)
    judge_policy(policy)
    return policy

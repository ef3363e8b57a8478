"""API keys in the record store's database (the SQLite file, or PostgreSQL), on the record
store's own connections. Only hashes of secrets are stored; a key is found by the hash of the
secret a client presents (its current secret, or the previous one during a rotation).

Public methods check arguments and scope by tenant; backends fill the primitives. ``tenant``
None means every tenant (a platform admin's call); otherwise the tenant is a condition of the
query itself, so another tenant's key is never read, revoked or rotated.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from tierq.model import ROLES, ApiKey


class KeyStore(abc.ABC):
    async def create(self, key: ApiKey) -> None:
        if key.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        await self._create(key)

    async def find(self, secret_hash: str) -> ApiKey | None:
        """The key whose current or previous secret has this hash (revoked ones included:
        the caller decides, and says so the same way for every reason)."""
        return await self._find(secret_hash)

    async def get(self, key_id: str, tenant: str | None) -> ApiKey | None:
        return await self._get(key_id, tenant)

    async def list_keys(self, tenant: str | None) -> list[ApiKey]:
        """Keys oldest first, revoked ones included."""
        return await self._list_keys(tenant)

    async def revoke(self, key_id: str, tenant: str | None, now: float) -> ApiKey | None:
        """Revoke (idempotent: a revoked key keeps its first revocation time)."""
        return await self._revoke(key_id, tenant, now)

    async def rotate(
        self,
        key_id: str,
        tenant: str | None,
        secret_hash: str,
        prefix: str,
        previous_until: float,
    ) -> ApiKey | None:
        """Give a live key a new secret; the current one keeps working until
        ``previous_until``. None when there is no such live key."""
        return await self._rotate(key_id, tenant, secret_hash, prefix, previous_until)

    async def touch_many(self, used: Sequence[tuple[str, float]]) -> None:
        """Record last use of many keys at once (never moves ``last_used_at`` back)."""
        if used:
            await self._touch_many(used)

    async def count_live(self, now: float) -> int:
        """Keys neither revoked nor expired."""
        return await self._count_live(now)

    # ---- primitives ------------------------------------------------------------------------

    @abc.abstractmethod
    async def _create(self, key: ApiKey) -> None: ...

    @abc.abstractmethod
    async def _find(self, secret_hash: str) -> ApiKey | None: ...

    @abc.abstractmethod
    async def _get(self, key_id: str, tenant: str | None) -> ApiKey | None: ...

    @abc.abstractmethod
    async def _list_keys(self, tenant: str | None) -> list[ApiKey]: ...

    @abc.abstractmethod
    async def _revoke(self, key_id: str, tenant: str | None, now: float) -> ApiKey | None: ...

    @abc.abstractmethod
    async def _rotate(
        self, key_id: str, tenant: str | None, secret_hash: str, prefix: str, until: float
    ) -> ApiKey | None: ...

    @abc.abstractmethod
    async def _touch_many(self, used: Sequence[tuple[str, float]]) -> None: ...

    @abc.abstractmethod
    async def _count_live(self, now: float) -> int: ...

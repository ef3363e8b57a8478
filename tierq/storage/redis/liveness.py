"""Heartbeats, rescue, the replica listing and the data generation of the dispatch tier.

Liveness is judged on the caller's clock: the replicas zset is scored with ``now + ttl``
from the heartbeat, and rescue compares it with its own ``now``. The per-owner key with a
real Redis TTL is only for humans and cleanup.
"""

from __future__ import annotations

import uuid

import orjson

from tierq.storage.base import ReplicaInfo, RescuedLease
from tierq.storage.redis.core import Command, RedisCore, log

# Dead markers older than this are forgotten: an owner frozen for longer than a day that
# wakes up is told it is alive; its late reports are still refused by the fencing token.
DEAD_MARKER_RETENTION_S = 86_400.0


class Liveness(RedisCore):
    async def heartbeat(self, owner: str, ttl: float, now: float, info: dict[str, object]) -> bool:
        k = self.keys
        doc = orjson.dumps({"last_heartbeat": now, "expires_at": now + ttl, "info": info})
        keys = [k.replicas, k.replica_info, k.dead, k.replica(owner)]
        args = [owner, now + ttl, doc, max(1, int(ttl * 1000))]
        (was_dead,) = await self._run([self._eval("heartbeat", keys, args)])
        if not was_dead:
            return True
        # Declared dead: anything it leased since (a claim racing the rescue) goes back
        # too, because the caller will now drop every task it holds.
        taken = await self._rescue_owners([owner], await self._queues())
        log.warning("owner %s was declared dead; took back %d more leases", owner, len(taken))
        return False

    async def rescue(self, now: float) -> list[RescuedLease]:
        k = self.keys
        cutoff = now - DEAD_MARKER_RETENTION_S
        reap = self._eval("reap", [k.replicas, k.replica_info, k.dead], [now, cutoff])
        raw_dead, raw_queues = await self._run([reap, ("SMEMBERS", k.queues)])
        dead = [o.decode() for o in raw_dead]
        if not dead:
            return []
        rescued = await self._rescue_owners(dead, sorted(q.decode() for q in raw_queues))
        if rescued:
            log.warning("rescued %d leases and unconfirmed acks of dead owners", len(rescued))
        return rescued

    async def _rescue_owners(self, owners: list[str], queues: list[str]) -> list[RescuedLease]:
        cmds: list[Command] = []
        for q in queues:
            qk = self.keys.queue(q)
            keys = [qk.ready, qk.lease, qk.meta, qk.delayed]
            keys += [*(qk.owned(o) for o in owners), *(qk.acked(o) for o in owners)]
            cmds.append(self._eval("rescue", keys, [self.keys.wake_channel, *owners]))
        return [
            RescuedLease(flat[i].decode(), int(flat[i + 1]), flat[i + 2].decode())
            for flat in await self._run(cmds)
            for i in range(0, len(flat), 3)
        ]

    async def replicas(self, now: float) -> list[ReplicaInfo]:
        raw = await self._run(
            [("ZRANGEBYSCORE", self.keys.replicas, f"({now!r}", "+inf", "WITHSCORES")]
        )
        flat = raw[0]
        # redis-py may already have paired the WITHSCORES reply, depending on version.
        pairs = (
            [tuple(p) for p in flat]
            if flat and isinstance(flat[0], list | tuple)
            else list(zip(flat[0::2], flat[1::2], strict=True))
        )
        owners = [o.decode() for o, _ in pairs]
        if not owners:
            return []
        queues = await self._queues()
        cmds: list[Command] = [("HMGET", self.keys.replica_info, *owners)]
        # "leased" counts what rescue would hand back: leases and unconfirmed terminal acks.
        for o in owners:
            for q in queues:
                qk = self.keys.queue(q)
                cmds += [("SCARD", qk.owned(o)), ("HLEN", qk.acked(o))]
        results = await self._run(cmds)
        per_owner = 2 * len(queues)
        out = []
        for n, owner in enumerate(owners):
            expires_at = float(pairs[n][1])
            doc = orjson.loads(results[0][n]) if results[0][n] else {}
            counts = results[1 + n * per_owner : 1 + (n + 1) * per_owner]
            last = doc.get("last_heartbeat", expires_at - self._heartbeat_ttl)
            out.append(
                ReplicaInfo(
                    owner=owner,
                    last_heartbeat=float(last),
                    expires_at=expires_at,
                    leased=sum(int(c) for c in counts),
                    info=dict(doc.get("info", {})),
                )
            )
        return sorted(out, key=lambda r: r.owner)

    async def generation(self) -> tuple[str, bool]:
        script = self._eval("generation", [self.keys.generation], [uuid.uuid4().hex])
        ((gen, created),) = await self._run([script])
        return gen.decode(), bool(created)

"""``POST /health/recovery``: the recovery passes an operator can run at once instead of
waiting for their loops (after a replica died, say): rescue the leases of replicas whose
heartbeat expired, release dependents whose parents ended, and write every pending state
change. Each pass is the one the engine
runs on its own; running it early is safe (they are idempotent)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from tierq.engine.engine import Engine


class RecoveryRun(msgspec.Struct, frozen=True):
    mode: str
    rescued_leases: int  # tasks of dead replicas returned to the queue (distributed)
    dispatch_generation: str | None  # the dispatch tier's generation this replica knows
    flushed: int  # state changes that were waiting and are now written
    duration_seconds: float


async def recover_now(engine: Engine) -> RecoveryRun:
    started = time.perf_counter()
    rescued = 0
    generation = None
    if engine.distributed:
        before = engine.rescuer.rescued
        await engine.rescuer.run_once()
        rescued = engine.rescuer.rescued - before
        # The dispatch tier's own repairs (reclaim, rebuild) follow the heartbeat, which
        # orders them with lease renewal: they are not run from here.
        generation = engine.repair.generation
    await engine.dependencies.retry_deferred()
    pending = engine.flusher.backlog
    await engine.flusher.run_once()
    engine.hint.poke()  # idle workers look for work now (what was rescued, say)
    return RecoveryRun(
        mode="distributed" if engine.distributed else "embedded",
        rescued_leases=rescued,
        dispatch_generation=generation,
        flushed=pending,
        duration_seconds=round(time.perf_counter() - started, 6),
    )

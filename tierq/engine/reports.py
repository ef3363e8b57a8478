"""What the engine reports about itself: statistics, health, workers. Shaped exactly as the API
serves them (the API encodes these structs and adds nothing), so the aggregation across tiers
lives here, not in route handlers."""

from __future__ import annotations

from typing import Any

import msgspec


class MemoryDepth(msgspec.Struct, frozen=True):
    ready: int
    delayed: int
    running: int
    limit: int
    unflushed: int


class Statistics(msgspec.Struct, frozen=True):
    counts: dict[str, int]  # every task state, 0 where none (maintained counters)
    total: int
    # The tiers' depths hold every tenant's tasks: shown to a platform caller only (None
    # for a tenant's statistics).
    memory: MemoryDepth | None
    dispatch: dict[str, int] | None
    node: str
    mode: str  # "embedded" or "distributed"


class Health(msgspec.Struct, frozen=True):
    status: str  # "ok", or "degraded" when not ready or a tier is unavailable
    ready: bool
    draining: bool
    checks: dict[str, str]  # tier -> "ok" or "unavailable: <error type>"
    node: str
    mode: str
    uptime_seconds: float

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class Readiness(msgspec.Struct, frozen=True):
    status: str  # "ready", "starting", "draining" or "record store unavailable"

    @property
    def ok(self) -> bool:
        return self.status == "ready"


class Replica(msgspec.Struct, frozen=True):
    node: str
    last_heartbeat: float
    expires_at: float
    leased: int
    info: dict[str, Any]


class Workers(msgspec.Struct, frozen=True):
    node: str
    workers: int
    busy: int
    running: list[str]  # at most RUNNING_SHOWN ids
    replicas: list[Replica]


RUNNING_SHOWN = 100

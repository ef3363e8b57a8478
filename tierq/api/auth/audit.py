"""The audit writer: entries recorded by the access middleware are appended in batches (all
that arrived while the previous append was in flight go in the next one, as group commit does
for tasks), and rows past the retention are deleted once an hour.

Masking: every value under a field named in ``redact_fields`` (any depth, any case) becomes
``"***"`` before it is recorded here or logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from tierq.engine.service import Service
from tierq.model import AuditEntry
from tierq.storage.audit import AuditStore

log = logging.getLogger("tierq.api.auth")
MASK = "***"
TRIM_EVERY_S = 3600.0
# Entries kept while the store is down; beyond, the oldest are dropped (counted, and logged
# once the store takes rows again).
BUFFER_LIMIT = 100_000


def redact(value: Any, names: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: MASK if str(k).lower() in names else redact(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, names) for v in value]
    return value


def redaction_set(fields: Iterable[str]) -> frozenset[str]:
    return frozenset(f.lower() for f in fields)


class AuditWriter(Service):
    name = "audit"

    def __init__(
        self, store: AuditStore, retention_s: float, appended: Callable[[int], None]
    ) -> None:
        super().__init__()
        self._store = store
        self._appended = appended  # told how many rows each append wrote (metrics)
        self._retention = retention_s
        self._pending: list[AuditEntry] = []
        self._trimmed_at = 0.0
        self.dropped = 0

    def record(self, entry: AuditEntry) -> None:
        self._pending.append(entry)
        if len(self._pending) > BUFFER_LIMIT:
            del self._pending[0]
            self.dropped += 1
        self.wake()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run_once(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            try:
                await self._store.append_many(batch)
            except BaseException:
                self._pending[:0] = batch  # kept, in order, for the next step
                raise
            self._appended(len(batch))
            if self.dropped:
                log.warning(
                    "audit log: %d entries were dropped while the record store was down "
                    "(more than %d waited)",
                    self.dropped,
                    BUFFER_LIMIT,
                )
                self.dropped = 0
        now = time.time()
        if now - self._trimmed_at >= TRIM_EVERY_S:
            self._trimmed_at = now
            await self._store.trim(now - self._retention)

    def next_wait(self) -> float:
        return 0.0 if self._pending else TRIM_EVERY_S

    async def drain(self) -> None:
        if self._pending:
            await self.run_once()

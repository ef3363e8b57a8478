"""Queue controls, queue depths and bulk-operation answers in PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tierq.storage.postgres.queries import sql
from tierq.storage.postgres.store import Conn, PostgresRecordStore
from tierq.storage.queues import QueueControl, QueueDepth, QueueStore, depths_from_rows

_CONTROLS = sql("queues_controls")
_CONTROL_SAVE = sql("queues_control_save")
_DEPTHS = sql("queues_depths")
_OPERATION = sql("queues_operation")
_OPERATION_BEGIN = sql("queues_operation_begin")
_OPERATION_FINISH = sql("queues_operation_finish")
_OPERATION_ABANDON = sql("queues_operation_abandon")
_OPERATIONS_FORGET = sql("queues_operations_forget")


class PostgresQueueStore(QueueStore):
    def __init__(self, record: PostgresRecordStore) -> None:
        self._record = record

    async def _call(self, method: str, query: str, *args: Any) -> Any:
        async def call(conn: Conn) -> Any:
            return await getattr(conn, method)(query, *args)

        return await self._record._run(call)

    async def _controls(self) -> Sequence[QueueControl]:
        rows = await self._call("fetch", _CONTROLS)
        return [QueueControl(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    async def _save_control(self, control: QueueControl) -> None:
        c = control
        await self._call(
            "execute",
            _CONTROL_SAVE,
            c.queue,
            c.paused,
            c.max_running,
            c.rate_limit,
            c.rate_per_s,
            c.updated_at,
        )

    async def _depths(self, tenant: str | None) -> Sequence[QueueDepth]:
        return depths_from_rows([tuple(r) for r in await self._call("fetch", _DEPTHS, tenant)])

    async def _begin_operation(self, tenant: str, key: str, now: float) -> bytes | None:
        if await self._call("fetchval", _OPERATION_BEGIN, tenant, key, now) == 1:
            return None
        answer = await self._call("fetchval", _OPERATION, tenant, key)
        # Deleted between the two statements (abandoned): the retry may run it then.
        return b"" if answer is None else str(answer).encode()

    async def _finish_operation(self, tenant: str, key: str, answer: bytes) -> None:
        await self._call("execute", _OPERATION_FINISH, tenant, key, answer.decode())

    async def _abandon_operation(self, tenant: str, key: str) -> None:
        await self._call("execute", _OPERATION_ABANDON, tenant, key)

    async def _forget_operations(self, before: float, running_before: float) -> int:
        status = await self._call("execute", _OPERATIONS_FORGET, before, running_before)
        return int(str(status).split()[-1])

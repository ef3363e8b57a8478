"""The flusher writes bounded batches; an outcome is confirmed with the dispatch tier only
after its own transition is in the record tier (a real SQLite record store underneath)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tests.helpers import record_task
from tierq.engine.flusher import Flusher
from tierq.ids import new_id
from tierq.model import Outcome, TaskState, Transition
from tierq.storage.base import Ack
from tierq.storage.sqlite.store import SQLiteRecordStore

NOW = 1_700_000_000.0


class Log:
    """Every call the flusher makes, in order."""

    def __init__(self, store: SQLiteRecordStore) -> None:
        self.store = store
        self.events: list[tuple[str, list[str]]] = []

    async def ack_many(self, acks: Sequence[Ack]) -> list[str]:
        self.events.append(("ack", [a.task_id for a in acks]))
        return []

    async def transition_many(self, transitions: Sequence[Transition]) -> list[str]:
        self.events.append(("record", [f"{t.task_id}:{t.state.value}" for t in transitions]))
        return await self.store.task_transition_many(transitions)

    async def confirm_many(self, ids: Sequence[str]) -> None:
        self.events.append(("confirm", list(ids)))

    async def on_flushed(self, transitions: list[Transition], refused: list[str]) -> None:
        return None


async def test_outcome_is_confirmed_only_after_its_own_transition_is_recorded(
    tmp_path: Path,
) -> None:
    store = SQLiteRecordStore(str(tmp_path / "f.db"))
    await store.open()
    try:
        x, a, b = new_id(), new_id(), new_id()
        await store.task_insert_many([record_task(id=x), record_task(id=a), record_task(id=b)])
        log = Log(store)
        flusher = Flusher(
            ack_many=log.ack_many,
            transition_many=log.transition_many,
            on_flushed=log.on_flushed,
            interval_s=0.01,
            batch_size=3,
            confirm_many=log.confirm_many,
        )
        # X's rescued attempt 1 (no ack of this process), two other reports, then X's attempt 2
        # succeeding here: its terminal ack belongs to the transition in the second batch.
        flusher.add(Transition(x, 1, TaskState.QUEUED, NOW, outcome=Outcome.ABANDONED))
        flusher.add(Transition(a, 1, TaskState.RUNNING, NOW, started_at=NOW))
        flusher.add(Transition(b, 1, TaskState.RUNNING, NOW, started_at=NOW))
        flusher.add(
            Transition(
                x,
                2,
                TaskState.SUCCEEDED,
                NOW,
                started_at=NOW,
                finished_at=NOW,
                outcome=Outcome.SUCCEEDED,
            ),
            Ack(x, 2, TaskState.SUCCEEDED),
        )
        await flusher.run_once()  # writes everything buffered, in batches of at most 3

        records = [ids for kind, ids in log.events if kind == "record"]
        assert [len(batch) for batch in records] == [3, 1]
        confirm_at = next(
            i for i, (kind, ids) in enumerate(log.events) if kind == "confirm" and x in ids
        )
        written_at = next(
            i
            for i, (kind, ids) in enumerate(log.events)
            if kind == "record" and f"{x}:succeeded" in ids
        )
        assert written_at < confirm_at, log.events
        assert not any(kind == "confirm" and x in ids for kind, ids in log.events[:written_at])
        stored = await store.task_get(x)
        assert stored is not None and stored.state is TaskState.SUCCEEDED
    finally:
        await store.close()

"""Stateful property test: RedisDispatch (real Redis) against a small Python model.

Replicas submit, claim, heartbeat, ack, crash (stop heartbeating), rescue and let the clock
run. After every step the Redis contents must match the model exactly, which checks: every
submitted task is in exactly one of ready / delayed / leased / acked / done; at most one
lease per task, and an ack is accepted only for that exact (owner, token), so stale tokens
are always refused; stored attempts never decrease; claims come out in run order. A terminal
ack leaves the task "acked" (kept, in the owner's acked hash) until that owner confirms it;
an owner that dies first has it rescued like a lease, so no outcome is lost.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from tests.helpers import REDIS_URL
from tierq.ids import new_id
from tierq.model import Task, TaskState
from tierq.storage.base import Ack
from tierq.storage.redis import dispatch as dispatch_module
from tierq.storage.redis.dispatch import RedisDispatch

START = 1_800_000_000.0
TTL = 6.0  # heartbeat_ttl: how long an owner that claims without heartbeating stays alive
OWNERS = ("a", "b", "c")
QUEUES = ("q1", "q2")
ACK_STATES = st.sampled_from([TaskState.SUCCEEDED, TaskState.SCHEDULED, TaskState.QUEUED])


@dataclass
class Model:
    task: Task  # as submitted (re-submitting it must change nothing)
    where: str  # ready | delayed | leased | acked | done
    run_at: float
    attempt: int
    lease: tuple[str, int] | None = None
    # Entries of owners' acked hashes (owner -> token). Only the one whose token is the
    # stored attempt while the task is "acked" stands; others are stale (a retry or a re-run
    # happened since) and are only dropped by confirm or rescue.
    acked: dict[str, int] = field(default_factory=dict)

    def ack_stands(self, owner: str) -> bool:
        return self.where == "acked" and self.acked.get(owner) == self.attempt

    @property
    def sort_key(self) -> tuple[int, float, str]:
        return (-self.task.priority, self.run_at, self.task.id)


class DispatchMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.d = RedisDispatch(REDIS_URL, prefix=f"m-{uuid.uuid4().hex[:12]}", heartbeat_ttl=TTL)
        self.run(self.d.open())
        self.now = START
        self.tasks: dict[str, Model] = {}
        self.expiry: dict[str, float] = {}  # owners the dispatch tier knows, by expiry
        self.dead: set[str] = set()  # declared dead by a rescue, not heartbeated since
        self.alive = set(OWNERS)
        self.history: list[tuple[str, str, int]] = []  # every lease ever granted
        self.attempt_seen: dict[str, int] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        async def purge() -> None:
            client = self.d._client
            keys = [k async for k in client.scan_iter(match="{" + self.d.keys.prefix + "*")]
            if keys:
                await client.delete(*keys)
            await self.d.close()

        try:
            self.run(purge())
        finally:
            self.loop.close()

    def _in(self, where: str) -> list[Model]:
        return [m for m in self.tasks.values() if m.where == where]

    # ---- rules ---------------------------------------------------------------------------

    @rule(
        n=st.integers(1, 4),
        delay=st.sampled_from([-1.0, 0.0, 0.0, 2.5, 8.0]),
        priority=st.sampled_from([0, 5, 5, 10]),
        queue=st.sampled_from(QUEUES),
        attempt=st.integers(0, 2),
    )
    def submit(self, n: int, delay: float, priority: int, queue: str, attempt: int) -> None:
        tasks = [
            Task(
                id=new_id(self.now),
                type="noop",
                queue=queue,
                priority=priority,
                payload=b"{}",
                state=TaskState.QUEUED,
                run_at=self.now + delay,
                created_at=self.now,
                updated_at=self.now,
                max_retries=3,
                timeout_s=10.0,
                attempt=attempt,
            )
            for _ in range(n)
        ]
        self.run(self.d.enqueue_many(tasks, None, self.now))
        for t in tasks:
            where = "ready" if t.run_at <= self.now else "delayed"
            self.tasks[t.id] = Model(t, where, t.run_at, t.attempt)

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def resubmit(self, data: st.DataObject) -> None:
        model = self.tasks[data.draw(st.sampled_from(sorted(self.tasks)))]
        if model.where == "done":
            return  # a finished task may legitimately come back (explicit retry)
        self.run(self.d.enqueue_many([model.task], None, self.now))
        if model.where == "acked":
            # Acked but unconfirmed: an explicit retry racing the confirm takes it back.
            t = model.task
            model.where = "ready" if t.run_at <= self.now else "delayed"
            model.run_at, model.attempt = t.run_at, max(model.attempt, t.attempt)

    @rule(owner=st.sampled_from(OWNERS), limit=st.integers(1, 5))
    def claim(self, owner: str, limit: int) -> None:
        if owner not in self.alive:
            return
        claimed = self.run(self.d.claim(owner, limit, self.now))
        for m in self._in("delayed"):
            if m.run_at <= self.now:
                m.where = "ready"
        expected = sorted(self._in("ready"), key=lambda m: m.sort_key)[:limit]
        assert [t.id for t in claimed] == [m.task.id for m in expected]
        for t, m in zip(claimed, expected, strict=True):
            assert (t.attempt, t.run_at, t.lease_owner) == (m.attempt, m.run_at, owner)
            m.where, m.lease = "leased", (owner, m.attempt + 1)
            self.history.append((owner, t.id, m.attempt + 1))
        if self.tasks:
            self.expiry.setdefault(owner, self.now + TTL)

    @rule(owner=st.sampled_from(OWNERS), ttl=st.sampled_from([2.0, 5.0]))
    def heartbeat(self, owner: str, ttl: float) -> None:
        if owner not in self.alive:
            return
        alive = self.run(self.d.heartbeat(owner, ttl, self.now, {"n": 1}))
        assert alive is (owner not in self.dead)
        if not alive:  # it takes back whatever it leased while declared dead
            self.dead.discard(owner)
            self._requeue({owner})
        self.expiry[owner] = self.now + ttl

    def _stale(self) -> list[tuple[str, str, int]]:
        return [(o, i, tok) for o, i, tok in self.history if self.tasks[i].lease != (o, tok)]

    @precondition(lambda self: self._in("leased"))
    @rule(
        data=st.data(), state=ACK_STATES, delay=st.sampled_from([0.0, 3.0]), foreign=st.booleans()
    )
    def ack(self, data: st.DataObject, state: TaskState, delay: float, foreign: bool) -> None:
        m = data.draw(st.sampled_from(sorted(self._in("leased"), key=lambda m: m.task.id)))
        assert m.lease is not None
        owner, token = m.lease
        if foreign:  # right token, wrong owner
            owner = data.draw(st.sampled_from([o for o in OWNERS if o != owner]))
        self._ack(owner, m.task.id, token, state, delay)

    @precondition(lambda self: self._in("leased"))
    @rule(data=st.data())
    def finish_all(self, data: st.DataObject) -> None:
        """An owner reports every lease it holds as succeeded (one flush): makes acked
        tasks, and so confirm and rescue of them, common enough to explore."""
        owner = data.draw(
            st.sampled_from(sorted({m.lease[0] for m in self._in("leased") if m.lease}))
        )
        for m in sorted(self._in("leased"), key=lambda m: m.task.id):
            if m.lease is not None and m.lease[0] == owner:
                self._ack(owner, m.task.id, m.lease[1], TaskState.SUCCEEDED, 0.0)

    @precondition(lambda self: self._stale())
    @rule(data=st.data(), state=ACK_STATES)
    def zombie_ack(self, data: st.DataObject, state: TaskState) -> None:
        """A replica reports a lease it lost (rescued, settled, or re-claimed since)."""
        owner, task_id, token = data.draw(st.sampled_from(self._stale()))
        self._ack(owner, task_id, token, state, 1.0)

    def _ack(self, owner: str, task_id: str, token: int, state: TaskState, delay: float) -> None:
        run_at = self.now + delay if state is TaskState.SCHEDULED else None
        refused = self.run(self.d.ack_many(owner, [Ack(task_id, token, state, run_at)], self.now))
        m = self.tasks[task_id]
        valid = m.where == "leased" and m.lease == (owner, token)
        assert refused == ([] if valid else [task_id])
        if not valid:
            return
        m.lease, m.attempt = None, token
        if state is TaskState.SUCCEEDED:
            m.where = "acked"
            m.acked[owner] = token
        elif state is TaskState.SCHEDULED:
            m.where, m.run_at = "delayed", self.now + delay
        else:
            m.where = "ready"

    @rule(owner=st.sampled_from(OWNERS), data=st.data())
    def confirm(self, owner: str, data: st.DataObject) -> None:
        """The owner's record write landed (only a live owner confirms)."""
        if owner not in self.alive:
            return
        known = sorted(i for i, m in self.tasks.items() if m.acked)
        ids = data.draw(st.lists(st.sampled_from(known), unique=True)) if known else []
        ids += data.draw(st.lists(st.sampled_from(sorted(self.tasks) or ["x"]), max_size=2))
        self.run(self.d.confirm_many(owner, ids))
        for i in set(ids) & set(self.tasks):
            m = self.tasks[i]
            if m.ack_stands(owner):
                m.where = "done"
            m.acked.pop(owner, None)

    @precondition(lambda self: len(self.alive) > 1)
    @rule(owner=st.sampled_from(OWNERS))
    def crash(self, owner: str) -> None:
        self.alive.discard(owner)

    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        owner = data.draw(st.sampled_from(OWNERS))
        leased = sorted(m.task.id for m in self._in("leased"))
        ids = data.draw(st.lists(st.sampled_from(leased), unique=True)) if leased else []
        mine = [
            i for i in ids if self.tasks[i].lease is not None and self.tasks[i].lease[0] == owner
        ]
        assert self.run(self.d.release(owner, ids)) == len(mine)
        for i in mine:
            self.tasks[i].where, self.tasks[i].lease = "ready", None

    @precondition(lambda self: self.tasks)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(sorted(self.tasks)), unique=True, max_size=3))
        expected = [i for i in ids if self.tasks[i].where in ("ready", "delayed")]
        assert self.run(self.d.cancel_many(ids)) == expected
        for i in expected:
            self.tasks[i].where = "done"

    @rule()
    def rescue(self) -> None:
        rescued = self.run(self.d.rescue(self.now))
        newly = {o for o, exp in self.expiry.items() if exp <= self.now}
        for o in newly:
            del self.expiry[o]
        self.dead |= newly
        expected = self._requeue(self.dead)
        assert {(r.task_id, r.attempt, r.owner) for r in rescued} == expected

    def _requeue(self, owners: set[str]) -> set[tuple[str, int, str]]:
        """Leases of ``owners`` go back to ready; the attempt they held counts as used. So do
        their standing unconfirmed terminal acks; their stale acked entries are dropped."""
        taken = set()
        for m in self._in("leased"):
            if m.lease is not None and m.lease[0] in owners:
                taken.add((m.task.id, m.lease[1], m.lease[0]))
                m.where, m.attempt, m.lease = "ready", m.lease[1], None
        for m in self.tasks.values():
            for owner in sorted(owners & set(m.acked)):
                if m.ack_stands(owner):
                    taken.add((m.task.id, m.attempt, owner))
                    m.where = "ready"
                del m.acked[owner]
        return taken

    @precondition(lambda self: len(self.alive) < len(OWNERS))
    @rule(data=st.data())
    def wake(self, data: st.DataObject) -> None:
        """A crashed (frozen) replica comes back; its next heartbeat tells it the news."""
        self.alive.add(data.draw(st.sampled_from(sorted(set(OWNERS) - self.alive))))

    @rule(dt=st.sampled_from([0.5, 1.0, 3.0, 7.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    # ---- invariants ----------------------------------------------------------------------

    @invariant()
    def redis_matches_model(self) -> None:
        async def snapshot() -> list[Any]:
            pipe = self.d._client.pipeline(transaction=False)
            for q in QUEUES:
                qk = self.d.keys.queue(q)
                pipe.zrange(qk.ready, 0, -1)
                pipe.zrange(qk.delayed, 0, -1)
                pipe.hgetall(qk.lease)
                pipe.hgetall(qk.meta)
                pipe.hkeys(qk.body)
                for o in OWNERS:
                    pipe.hgetall(qk.acked(o))
            return list(await pipe.execute())

        raw = self.run(snapshot())
        ready: list[str] = []
        delayed: list[str] = []
        leases: dict[str, str] = {}
        metas: dict[str, str] = {}
        bodies: list[str] = []
        acked: dict[tuple[str, str], int] = {}
        step = 5 + len(OWNERS)
        for i in range(0, len(raw), step):
            ready += [m.decode()[32:] for m in raw[i]]
            delayed += [m.decode()[32:] for m in raw[i + 1]]
            leases.update({k.decode(): v.decode() for k, v in raw[i + 2].items()})
            metas.update({k.decode(): v.decode() for k, v in raw[i + 3].items()})
            bodies += [b.decode() for b in raw[i + 4]]
            for n, o in enumerate(OWNERS):
                acked.update({(o, k.decode()): int(v) for k, v in raw[i + 5 + n].items()})
        assert acked == {
            (o, m.task.id): token for m in self.tasks.values() for o, token in m.acked.items()
        }
        # Exactly one place per task: the four are disjoint and cover the bodies.
        places = ready + delayed + list(leases) + [m.task.id for m in self._in("acked")]
        assert len(places) == len(set(places)) and sorted(places) == sorted(bodies)
        assert set(ready) == {m.task.id for m in self._in("ready")}
        assert set(delayed) == {m.task.id for m in self._in("delayed")}
        assert leases == {
            m.task.id: f"{m.lease[0]}|{m.lease[1]}"
            for m in self._in("leased")
            if m.lease is not None
        }
        assert set(metas) == set(bodies)
        for task_id, meta in metas.items():
            attempt = int(meta.split("|", 1)[0])
            assert attempt == self.tasks[task_id].attempt
            assert attempt >= self.attempt_seen.get(task_id, 0)
            self.attempt_seen[task_id] = attempt
        depth = self.run(self.d.depth())
        assert depth == {"ready": len(ready), "delayed": len(delayed), "leased": len(leases)}


DispatchMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("TIERQ_MODEL_EXAMPLES", "200")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDispatchModel = DispatchMachine.TestCase


class ChunkedDispatchMachine(DispatchMachine):
    """The same model with script calls of at most two tasks, so every batch of the
    machine crosses chunk boundaries (production batches are cut at SCRIPT_CHUNK)."""

    def __init__(self) -> None:
        self.saved_chunk = dispatch_module.SCRIPT_CHUNK
        dispatch_module.SCRIPT_CHUNK = 2
        super().__init__()

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            dispatch_module.SCRIPT_CHUNK = self.saved_chunk


ChunkedDispatchMachine.TestCase.settings = DispatchMachine.TestCase.settings
TestChunkedDispatchModel = ChunkedDispatchMachine.TestCase

"""The Redis dispatch tier: the shared queue several replicas pull from (distributed mode).

Layout (see ``keys.py`` for names and the ready-order encoding): per queue a ready zset, a
delayed zset, a lease hash ``id -> owner|token``, a body hash, a meta hash
``id -> attempt|member``, one owned set per owner and one acked hash ``id -> token`` per owner
(terminal acks whose record write may not have landed yet); globally the set of queues, a
zset of replicas scored by heartbeat expiry, their info, owners declared dead, the data
generation and a wake-up channel. Heartbeat, rescue, replicas and generation live in
``liveness.py``.

What must stay true: a task known to the dispatch tier has a body and a meta entry and is in
exactly one of ready, delayed, lease or an owner's acked hash (a terminal ack leaves body
and meta until ``confirm_many``, so an owner that dies before recording the outcome has the
task rescued, not lost); every state change is one Lua script per queue per
batch, so replicas racing on the same queue never see half a move. Time only ever comes from
the caller's ``now`` (the replicas zset is scored with it), never from Redis TIME; the
per-owner key with a real TTL exists for humans and is never read by rescue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from tierq.model import Task, TaskState
from tierq.storage import offload
from tierq.storage.base import (
    Ack,
    Dispatch,
    DispatchCapabilities,
    GenerationChanged,
    StoreUnavailable,
)
from tierq.storage.queues import QueueControl
from tierq.storage.redis.codec import decode_task, encode_task
from tierq.storage.redis.core import TRANSIENT, Command, ResponseError, connect, log
from tierq.storage.redis.eviction import check_eviction_policy
from tierq.storage.redis.keys import member, run_at_from_member, run_at_hex
from tierq.storage.redis.liveness import Liveness

# Redis runs one script at a time and nothing else meanwhile, so the tasks one script call
# handles bound how long every other client (a single submit's write-through, statistics,
# heartbeats) can wait behind it. A batch is still one round trip: its chunks go in one
# pipeline, and Redis serves other clients between them (SLOWLOG figures of 1,000-task
# calls: BENCHMARKS.md, "Redis script chunks").
SCRIPT_CHUNK = 250
# Due delayed tasks moved per script call, for the same reason; when a large backlog falls
# due at once, the rest move on the next claim or promote.
PROMOTE_CAP = 500
# A claim hands out start slots of a rate-limited queue up to this far ahead (the pager
# claims every 0.25 s at least, so slots never run dry between two claims).
RATE_LOOKAHEAD_S = 1.0
# Values before the claimed pairs in a claim script's reply: first slot, interval, waits.
CLAIM_HEAD = 3
_ACK_KIND = {TaskState.SCHEDULED: "s", TaskState.QUEUED: "q"}


def chunks(args: list[Any], stride: int) -> list[list[Any]]:
    """``args`` (``stride`` values per task) cut into the argument lists of script calls
    of at most SCRIPT_CHUNK tasks each; always at least one list."""
    step = SCRIPT_CHUNK * stride
    return [args[i : i + step] for i in range(0, len(args), step)] or [[]]


def _decode_claimed(flat: Sequence[bytes], owner: str) -> list[tuple[bytes, Task]]:
    """The claim script's reply (first slot, interval, waits, then body, "attempt|member",
    ...) as (member, task) pairs. Under a queue's rate, task k may start at first + k *
    interval: its run_at says so, and the memory tier holds it until then."""
    first = float(flat[0]) if flat[0] else None
    interval = float(flat[1]) if flat[1] else 0.0
    out: list[tuple[bytes, Task]] = []
    for k, i in enumerate(range(CLAIM_HEAD, len(flat), 2)):
        attempt, mem = flat[i + 1].split(b"|", 1)
        run_at = run_at_from_member(mem)
        if first is not None:
            run_at = max(run_at, first + k * interval)
        task = decode_task(flat[i], int(attempt), run_at, TaskState.QUEUED, owner)
        out.append((mem, task))
    return out


def _enqueue_args(tasks: Sequence[Task]) -> dict[str, list[Any]]:
    """Per queue, the enqueue script's arguments: id, member, run_at, attempt, body."""
    by_queue: dict[str, list[Any]] = defaultdict(list)
    for t in tasks:
        by_queue[t.queue] += (
            t.id,
            member(t.priority, t.run_at, t.id),
            t.run_at,
            t.attempt,
            encode_task(t),
        )
    return by_queue


class RedisDispatch(Liveness, Dispatch):
    capabilities = DispatchCapabilities(shared=True, leases_expire=True)

    def __init__(self, url: str, *, prefix: str = "tierq", heartbeat_ttl: float = 6.0) -> None:
        """``heartbeat_ttl`` is how long the leases of an owner that claims without ever
        heartbeating stay alive; ``heartbeat()`` sets its own TTL per call."""
        super().__init__(url, prefix, heartbeat_ttl)
        # Loop-bound state is created in open() only.
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._cancel_listener: Callable[[list[str]], None] | None = None
        self._schedules_listener: Callable[[list[str]], None] | None = None
        self._flow_listener: Callable[[str], None] | None = None
        self._report_listener: Callable[[bytes], None] | None = None
        self._channels = (
            self.keys.wake_channel,
            self.keys.cancel_channel,
            self.keys.schedules_channel,
            self.keys.flow_channel,
            self.keys.report_channel,
        )
        # Queue of each task this instance leased out or acked as terminal and not yet
        # confirmed, so an ack, release or confirm goes to one queue's script instead of all
        # of them. Only a routing hint: the scripts check the lease (or the acked hash), and
        # unknown ids are tried on every queue.
        self._queue_of: dict[str, str] = {}
        # Queue names as depth() last saw them (see there).
        self._depth_queues: list[str] = []
        # Told how many ready tasks a claim left because of their queue's limits.
        self.on_limit_waits: Callable[[int], None] | None = None

    # ---- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is not None:
            return
        client: Any = connect(self._url)
        try:
            await check_eviction_policy(client)
            await self._load_scripts(client)
            pubsub = client.pubsub()
            await pubsub.subscribe(*self._channels)
            # Wait for every confirmation so no message published after open() is missed.
            confirmed = 0
            while confirmed < len(self._channels):
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "subscribe":
                    confirmed += 1
        except TRANSIENT as exc:
            await client.aclose()
            raise StoreUnavailable(f"redis: {exc}") from exc
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self._pubsub = pubsub
        self._wake = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(pubsub, self._wake))

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            try:
                await listener
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            await pubsub.aclose()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def check_eviction_policy(self) -> str | None:
        """Raise EvictionPolicyError if Redis may evict queue keys (also run by open())."""
        return await check_eviction_policy(self._require())

    # ---- writes ------------------------------------------------------------------------

    async def _enqueue_many(
        self, tasks: Sequence[Task], lease_owner: str | None, now: float, take_back: bool
    ) -> list[str]:
        by_queue = await offload.build(_enqueue_args, tasks)
        cmds: list[Command] = [("SADD", self.keys.queues, *by_queue)]
        owner = lease_owner or ""
        wake = self.keys.wake_channel
        if lease_owner:
            cmds.append(self._register(lease_owner, now))
        for queue, args in by_queue.items():
            qk = self.keys.queue(queue)
            keys = [*qk.core, qk.owned(owner), qk.control]
            for part in chunks(args, 5):
                args = [now, owner, wake, "1" if take_back else "0", *part]
                cmds.append(self._eval("enqueue", keys, args))
        results = await self._run(cmds)
        unleased = [i.decode() for r in results[2 if lease_owner else 1 :] for i in r]
        if lease_owner:
            refused = set(unleased)
            self._queue_of.update((t.id, t.queue) for t in tasks if t.id not in refused)
        return unleased

    async def _claim(self, owner: str, limit: int, now: float, skip: Sequence[str]) -> list[Task]:
        queues = [q for q in await self._queues() if q not in skip]
        claimed: list[tuple[bytes, Task]] = []
        # A queue's claim may come back short: it ran dry, or its limits (control hash) let
        # fewer go. One more round then splits what is left over the other queues, so a
        # limited queue at the head of the run order does not starve the rest.
        for _round in range(2):
            if not queues or limit <= 0:
                break
            plan = {queues[0]: limit} if len(queues) == 1 else await self._plan(queues, limit, now)
            got, short = await self._claim_plan(owner, plan, now)
            claimed += got
            limit -= len(got)
            if not short:
                break
            queues = [q for q in queues if q not in short]
        if len({task.queue for _, task in claimed}) > 1:
            claimed.sort(key=lambda pair: pair[0])
        return [task for _, task in claimed]

    async def _claim_plan(
        self, owner: str, plan: dict[str, int], now: float
    ) -> tuple[list[tuple[bytes, Task]], set[str]]:
        """One round trip of claim scripts: the (member, task) pairs leased, and the queues
        that gave fewer than planned."""
        cmds: list[Command] = [self._register(owner, now)]
        sent: list[tuple[str, int]] = []  # the queue and count of each claim call
        wake = self.keys.wake_channel
        for queue, count in plan.items():
            qk = self.keys.queue(queue)
            keys = [*qk.core, qk.owned(owner), qk.control]
            for part in range(0, count, SCRIPT_CHUNK):
                n = min(SCRIPT_CHUNK, count - part)
                cmds.append(
                    self._eval("claim", keys, [now, n, owner, PROMOTE_CAP, wake, RATE_LOOKAHEAD_S])
                )
                sent.append((queue, n))
        results = await self._run(cmds)
        claimed: list[tuple[bytes, Task]] = []
        short: set[str] = set()
        for (queue, asked), flat in zip(sent, results[1:], strict=True):
            if (len(flat) - CLAIM_HEAD) // 2 < asked:
                short.add(queue)
            waits = int(flat[2])
            if waits and self.on_limit_waits is not None:
                self.on_limit_waits(waits)
            if len(flat) <= CLAIM_HEAD:
                continue
            tasks = await offload.build(lambda f: _decode_claimed(f, owner), flat)
            for _member, task in tasks:
                self._queue_of[task.id] = queue
            claimed += tasks
        return claimed, short

    async def _plan(self, queues: list[str], limit: int, now: float) -> dict[str, int]:
        """Split ``limit`` over several queues by merging their heads in run order (members
        compare across queues). Racing claimers may take some heads first; then we get the
        next ones of that queue, which is as good as run order gets without a global lock."""
        cmds = [
            self._eval(
                "promote",
                [self.keys.queue(q).ready, self.keys.queue(q).delayed],
                [now, PROMOTE_CAP, self.keys.wake_channel, limit],
            )
            for q in queues
        ]
        heads = sorted(
            (mem, q)
            for q, res in zip(queues, await self._run(cmds), strict=True)
            for mem in res[1:]
        )
        plan: dict[str, int] = defaultdict(int)
        for _, q in heads[:limit]:
            plan[q] += 1
        return plan

    async def _ack_many(
        self, owner: str, acks: Sequence[Ack], now: float, generation: str
    ) -> list[str]:
        by_queue: dict[str | None, list[Any]] = defaultdict(list)
        terminal: dict[str, str] = {}
        for a in acks:
            queue = self._queue_of.pop(a.task_id, None)
            if a.state.terminal:
                if queue is not None:
                    terminal[a.task_id] = queue
                kind, run_at, hexed = "t", now, ""
            else:  # the base class let only scheduled and queued through besides terminal
                kind = _ACK_KIND[a.state] if a.started else "d"
                run_at = now if a.run_at is None else a.run_at
                hexed = "" if a.run_at is None and kind == "q" else run_at_hex(run_at)
            by_queue[queue] += (
                a.task_id,
                a.attempt,
                kind,
                run_at,
                hexed,
            )
        refused = await self._ack_routed(owner, by_queue, generation)
        self._queue_of.update((i, q) for i, q in terminal.items() if i not in refused)
        return [a.task_id for a in acks if a.task_id in refused]

    async def _routed(self, ids: Sequence[str]) -> list[tuple[Any, list[Any]]]:
        """(queue keys, ids) per queue to send ``ids`` to: a task's own queue when this
        instance knows it (and forgets it now), every queue for the ones it does not."""
        by_queue: dict[str | None, list[Any]] = defaultdict(list)
        for task_id in ids:
            by_queue[self._queue_of.pop(task_id, None)].append(task_id)
        unknown = by_queue.get(None, [])
        return [
            (self.keys.queue(queue), by_queue.get(queue, []) + unknown)
            for queue in await self._targets(by_queue)
        ]

    async def _confirm_many(self, owner: str, ids: Sequence[str]) -> None:
        cmds: list[Command] = [
            self._eval("confirm", [*qk.core, qk.acked(owner)], part)
            for qk, ids_here in await self._routed(ids)
            for part in chunks(ids_here, 1)
        ]
        await self._run(cmds)

    async def _reclaim(self, owner: str, held: Sequence[tuple[Task, int]], now: float) -> list[str]:
        by_queue: dict[str, list[Any]] = defaultdict(list)
        for task, token in held:
            by_queue[task.queue] += (
                task.id,
                member(task.priority, task.run_at, task.id),
                token - 1,
                token,
                encode_task(task),
            )
        cmds: list[Command] = [("SADD", self.keys.queues, *by_queue), self._register(owner, now)]
        for queue, args in by_queue.items():
            qk = self.keys.queue(queue)
            keys = [qk.ready, qk.delayed, qk.lease, qk.body, qk.meta, qk.owned(owner)]
            for part in chunks(args, 5):
                cmds.append(self._eval("reclaim", keys, [owner, *part]))
        results = await self._run(cmds)
        taken = [i.decode() for r in results[2:] for i in r]
        refused = set(taken)
        self._queue_of.update((t.id, t.queue) for t, _ in held if t.id not in refused)
        return taken

    async def _release(self, owner: str, ids: Sequence[str]) -> int:
        cmds: list[Command] = [
            self._eval(
                "release",
                [qk.ready, qk.lease, qk.meta, qk.owned(owner)],
                [owner, self.keys.wake_channel, *part],
            )
            for qk, ids_here in await self._routed(ids)
            for part in chunks(ids_here, 1)
        ]
        return sum(int(n) for n in await self._run(cmds))

    async def _cancel_many(self, ids: Sequence[str]) -> list[str]:
        queues = await self._queues()
        cmds = [
            self._eval("cancel", self.keys.queue(q).core, part)
            for q in queues
            for part in chunks(list(ids), 1)
        ]
        removed = {r.decode() for res in await self._run(cmds) for r in res}
        return [i for i in ids if i in removed]

    async def promote(self, now: float) -> int:
        """Move due delayed tasks to ready in every queue; return how many moved."""
        queues = await self._queues()
        cmds = [
            self._eval(
                "promote",
                [self.keys.queue(q).ready, self.keys.queue(q).delayed],
                [now, PROMOTE_CAP, self.keys.wake_channel, 0],
            )
            for q in queues
        ]
        return sum(int(res[0]) for res in await self._run(cmds))

    # ---- reads and waiting -------------------------------------------------------------

    async def wait_for_work(self, max_wait: float) -> None:
        wake = self._wake
        if wake is None:
            raise RuntimeError("RedisDispatch is not open")
        if not wake.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max_wait)
        wake.clear()

    async def depth(self) -> dict[str, int]:
        """Task counts over every queue, in one round trip when the queue names are those
        seen last time: the names are read in the same round trip as the sizes of the
        queues known so far, and only queues new since then cost a second one. (Statistics
        call this; while a backlog drains every round trip may wait for a busy Redis.)"""
        known = self._depth_queues
        names, *sizes = await self._run([("SMEMBERS", self.keys.queues), *self._sizes(known)])
        queues = sorted(q.decode() for q in names)
        seen = set(known)
        new = [q for q in queues if q not in seen]
        if new:
            sizes += await self._run(self._sizes(new))
        self._depth_queues = queues
        # Three sizes per queue, in the order asked; a queue that left the set (the
        # dispatch tier was wiped) is not counted.
        listed = set(queues)
        totals = [0, 0, 0]
        for i, queue in enumerate([*known, *new]):
            if queue in listed:
                for kind in range(3):
                    totals[kind] += int(sizes[3 * i + kind])
        return {"ready": totals[0], "delayed": totals[1], "leased": totals[2]}

    def _sizes(self, queues: list[str]) -> list[Command]:
        cmds: list[Command] = []
        for q in queues:
            qk = self.keys.queue(q)
            cmds += [("ZCARD", qk.ready), ("ZCARD", qk.delayed), ("HLEN", qk.lease)]
        return cmds

    # ---- plumbing ----------------------------------------------------------------------

    async def _targets(self, by_queue: dict[str | None, list[Any]]) -> list[str]:
        """Queues a routed batch must visit: the ones its ids are known to be in, plus
        every queue when some ids were not leased through this instance."""
        known = [q for q in by_queue if q is not None]
        if None not in by_queue:
            return known
        return sorted(set(known) | set(await self._queues()))

    async def _ack_routed(
        self, owner: str, by_queue: dict[str | None, list[Any]], generation: str
    ) -> set[str]:
        """Run the ack script once per target queue; return the refused ids. A known id
        goes to its own queue only; an unknown id goes to every queue and is refused only
        when every queue refused it."""
        unknown = by_queue.get(None, [])
        unknown_ids = set(unknown[0::5])
        targets = await self._targets(by_queue)
        cmds: list[Command] = []
        sent: list[str] = []  # the queue of each ack call
        for queue in targets:
            qk = self.keys.queue(queue)
            keys = [*qk.core, qk.owned(owner), qk.acked(owner), self.keys.generation]
            args = [owner, self.keys.wake_channel, generation]
            for part in chunks([*by_queue.get(queue, []), *unknown], 5):
                cmds.append(self._eval("ack", keys, [*args, *part]))
                sent.append(queue)
        refused_in: dict[str, set[str]] = defaultdict(set)
        try:
            results = await self._run(cmds)
        except ResponseError as exc:
            if str(exc).startswith("TIERQ_GENERATION"):
                raise GenerationChanged("redis: the dispatch tier lost its data") from None
            raise
        for queue, res in zip(sent, results, strict=True):
            refused_in[queue].update(r.decode() for r in res)
        refused: set[str] = set()
        refused_everywhere = set(unknown_ids)
        for queue in targets:
            got = refused_in[queue]
            refused |= got - unknown_ids
            refused_everywhere &= got
        return refused | refused_everywhere

    async def _announce_cancel(self, ids: Sequence[str]) -> None:
        if ids:
            await self._run([("PUBLISH", self.keys.cancel_channel, ",".join(ids))])

    def listen_cancel(self, callback: Callable[[list[str]], None]) -> None:
        self._cancel_listener = callback

    async def _announce_schedules(self, ids: Sequence[str]) -> None:
        await self._run([("PUBLISH", self.keys.schedules_channel, ",".join(ids))])

    def listen_schedules(self, callback: Callable[[list[str]], None]) -> None:
        self._schedules_listener = callback

    async def _announce_flow(self, message: str) -> None:
        await self._run([("PUBLISH", self.keys.flow_channel, message)])

    def listen_flow(self, callback: Callable[[str], None]) -> None:
        self._flow_listener = callback

    async def _announce_report(self, message: bytes) -> None:
        await self._run([("PUBLISH", self.keys.report_channel, message)])

    def listen_report(self, callback: Callable[[bytes], None]) -> None:
        self._report_listener = callback

    def listen_limit_waits(self, callback: Callable[[int], None]) -> None:
        self.on_limit_waits = callback

    async def _set_controls(self, controls: Sequence[QueueControl]) -> None:
        """One round trip: each queue's control hash, as the claim script reads it. The rate's
        ``tat`` is kept (a changed rate applies from the next free slot on)."""
        cmds: list[Command] = [("SADD", self.keys.queues, *(c.queue for c in controls))]
        for c in controls:
            key = self.keys.queue(c.queue).control
            values = {
                "paused": "1" if c.paused else None,
                "max_running": c.max_running,
                "interval": None if c.interval_s is None else repr(c.interval_s),
            }
            # Set before unset, field by field: a claim in between never sees a limit that
            # is set go missing.
            fields = [
                x for name, value in values.items() if value is not None for x in (name, value)
            ]
            unset = [name for name, value in values.items() if value is None]
            if not fields:
                cmds.append(("DEL", key))  # no controls left (the rate's tat goes too)
                continue
            cmds.append(("HSET", key, *fields))
            if unset:
                cmds.append(("HDEL", key, *unset))
        # A resumed queue or a raised limit may let waiting tasks go: idle replicas claim now.
        cmds.append(("PUBLISH", self.keys.wake_channel, "controls"))
        await self._run(cmds)

    async def _listen(self, pubsub: Any, wake: asyncio.Event) -> None:
        """Turn wake-up messages into ``wake.set()`` and cancel announcements into calls of
        the cancel listener. Survives Redis restarts: after a disconnect it sets ``wake``
        anyway, since messages may have been lost."""
        cancel_channel = self.keys.cancel_channel.encode()
        schedules_channel = self.keys.schedules_channel.encode()
        flow_channel = self.keys.flow_channel.encode()
        report_channel = self.keys.report_channel.encode()
        while True:
            try:
                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    if message["channel"] == cancel_channel:
                        if self._cancel_listener is not None:
                            ids = message["data"].decode().split(",")
                            self._cancel_listener([i for i in ids if i])
                    elif message["channel"] == report_channel:
                        if self._report_listener is not None:
                            self._report_listener(message["data"])
                    elif message["channel"] == flow_channel:
                        if self._flow_listener is not None:
                            self._flow_listener(message["data"].decode())
                    elif message["channel"] == schedules_channel:
                        if self._schedules_listener is not None:
                            ids = message["data"].decode().split(",")
                            self._schedules_listener([i for i in ids if i])
                    else:
                        wake.set()
                await pubsub.subscribe(*self._channels)
            except TRANSIENT as exc:
                log.warning("wake-up subscription lost (%s); reconnecting", exc)
                wake.set()
                if self._schedules_listener is not None:
                    self._schedules_listener([])
                if self._flow_listener is not None:
                    self._flow_listener("")
                await asyncio.sleep(0.5)

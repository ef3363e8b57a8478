"""The write jobs of the SQLite store, and the per-state counts they keep.

Each ``*_job`` function returns a job: a plain function of the writer's connection, run
inside the writer's group transaction (``connection.py``), so it may run more than once and
has no effect outside the database.

``task_state_counts`` is kept here, not by triggers: every job that changes a task's state
knows the old and the new state of each row it changed (from its batch, a pre-read in the
same transaction, or the fixed old state its WHERE clause allows) and adds the deltas with
one statement. What must stay true: any new statement that inserts tasks or changes
``tasks.state`` adds its deltas through ``_add_counts`` in the same job. Exact because one
process owns the file and all writes run on one thread (``capabilities.shared`` is False).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from tierq.model import (
    TERMINAL_STATES,
    DependencyRelease,
    RecoveryReport,
    Task,
    Transition,
)
from tierq.storage.sqlite import rows
from tierq.storage.sqlite.batches import execute_rows
from tierq.storage.sqlite.connection import Replay
from tierq.storage.sqlite.sqlfiles import load
from tierq.storage.text import without_nul

_SQL = {
    name: load(name)
    for name in (
        "task_insert",
        "dependency_insert",
        "task_ids_by_key",
        "task_fence_read",
        "task_transition",
        "execution_upsert",
        "task_counts_add",
        "task_states_of",
        "task_cancel",
        "task_retry",
        "task_claim_pick",
        "task_claim",
        "recover_executions",
        "recover_running",
        "recover_leases",
        "dependents_cancel",
        "dependents_ready",
    )
}
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)
_CANCELLABLE = rows.json_list(["pending", "scheduled", "queued"])
_RETRYABLE = rows.json_list(["failed", "cancelled"])

Job = Callable[[sqlite3.Connection], Any]
_TASK_WIDTH = rows.TASK_COLUMNS


class CountsDiverged(RuntimeError):
    """A statement changed a different number of rows than the job had counted: the batch
    is refused rather than leaving task_state_counts wrong."""


def _add_counts(conn: sqlite3.Connection, deltas: Mapping[str, int]) -> None:
    nonzero = {state: n for state, n in deltas.items() if n}
    if nonzero:
        conn.execute(_SQL["task_counts_add"], (orjson.dumps(nonzero).decode(),))


# ---- insert ----------------------------------------------------------------------------------


def insert_job(tasks: Sequence[Task]) -> Job:
    params = [rows.task_params(t) for t in tasks]
    keys = _stored_keys(tasks)

    def job(conn: sqlite3.Connection) -> list[str]:
        stored = [t.id for t in tasks]
        send = params
        fresh: Sequence[int] = range(len(tasks))
        if keys:
            # A key held by an earlier batch, or earlier in this one, keeps its first task:
            # known before the insert, so the skipped rows are neither sent nor counted.
            owner = _key_holders(conn, keys)
            keep: list[int] = []
            for i, t in enumerate(tasks):
                key = keys.get(i)
                if key is None:
                    keep.append(i)
                elif key in owner:
                    stored[i] = owner[key]
                else:
                    owner[key] = t.id
                    keep.append(i)
            if len(keep) != len(tasks):
                send = [params[i] for i in keep]
                fresh = keep
        if send and execute_rows(conn, _SQL["task_insert"], _TASK_WIDTH, send) != len(send):
            raise Replay(_insert_exact(tasks, params, keys))  # a duplicate id: rare
        state_text = rows.STATE_TEXT
        _add_counts(conn, Counter(state_text[tasks[i].state] for i in fresh))
        _insert_edges(conn, tasks, stored)
        return stored

    return job


def insert_exact_job(tasks: Sequence[Task]) -> Job:
    """The insert row by row (what ``insert_job`` replays itself as on a duplicate id), for
    a job that runs the insert inside its own transaction and replays as a whole."""
    return _insert_exact(tasks, [rows.task_params(t) for t in tasks], _stored_keys(tasks))


def _stored_keys(tasks: Sequence[Task]) -> dict[int, tuple[str, str]]:
    """(idempotency key, tenant) by task index, keys as stored (NUL replaced, storage/
    text.py): the lookups by key must use them or miss. A key is unique per tenant."""
    return {
        i: (without_nul(t.idempotency_key), t.tenant)
        for i, t in enumerate(tasks)
        if t.idempotency_key is not None
    }


def _key_holders(
    conn: sqlite3.Connection, keys: Mapping[int, tuple[str, str]]
) -> dict[tuple[str, str], str]:
    """(key, tenant) -> id of the task holding it, for the keys of ``keys``."""
    wanted = rows.json_list(sorted({k for k, _ in keys.values()}))
    return {(k, tenant): i for k, tenant, i in conn.execute(_SQL["task_ids_by_key"], (wanted,))}


def _insert_exact(
    tasks: Sequence[Task], params: Sequence[rows.TaskRow], keys: dict[int, tuple[str, str]]
) -> Job:
    """Row by row, so each skipped row (duplicate id or key) is known and not counted."""

    def job(conn: sqlite3.Connection) -> list[str]:
        stored = [t.id for t in tasks]
        added: Counter[str] = Counter()
        for t, p in zip(tasks, params, strict=True):
            if execute_rows(conn, _SQL["task_insert"], _TASK_WIDTH, [p]):
                added[t.state.value] += 1
        if keys:
            owner = _key_holders(conn, keys)
            for i, key in keys.items():
                stored[i] = owner[key]
        _add_counts(conn, added)
        _insert_edges(conn, tasks, stored)
        return stored

    return job


def _insert_edges(conn: sqlite3.Connection, tasks: Sequence[Task], stored: list[str]) -> None:
    edges = [
        (t.id, dep)
        for t, sid in zip(tasks, stored, strict=True)
        if t.depends_on and sid == t.id
        for dep in t.depends_on
    ]
    if edges:
        conn.executemany(_SQL["dependency_insert"], edges)


# ---- transitions -----------------------------------------------------------------------------


def transition_job(transitions: Sequence[Transition]) -> Job:
    ids = rows.json_list([tr.task_id for tr in transitions])
    state_text = rows.STATE_TEXT
    outcome_text = rows.OUTCOME_TEXT

    def job(conn: sqlite3.Connection) -> list[str]:
        (found,) = conn.execute(_SQL["task_fence_read"], (ids,)).fetchone()
        # id -> [id, state, attempt], updated in place as the batch is applied.
        stored: dict[str, list[Any]] = {row[0]: row for row in orjson.loads(found)}
        # The fencing rule of task_transition.sql, applied in batch order: a repeated id
        # sees the state and attempt its earlier transition in this batch wrote. The UPDATE
        # takes one row per task, so a repeated id is merged here the way two updates in a
        # row would have left it: later values win, NULLs keep the earlier ones
        # (lease_owner is always written). Execution rows go in batch order (see
        # execution_upsert.sql).
        deltas: dict[str, int] = {}
        refused: list[str] = []
        updates: dict[str, list[Any]] = {}
        execs: list[tuple[Any, ...]] = []
        terminal = _TERMINAL
        lookup = stored.get
        for tr in transitions:
            task_id = tr.task_id
            attempt = tr.attempt
            cur = lookup(task_id)
            if cur is None:
                refused.append(task_id)
                continue
            old = cur[1]
            if old in terminal or cur[2] > attempt:
                refused.append(task_id)
                continue
            new = state_text[tr.state]
            if new != old:
                deltas[old] = deltas.get(old, 0) - 1
                deltas[new] = deltas.get(new, 0) + 1
                cur[1] = new
            cur[2] = attempt
            started_at = tr.started_at
            error = tr.error
            row = [
                task_id,
                new,
                attempt,
                tr.at,
                tr.run_at,
                started_at,
                tr.finished_at,
                tr.result,
                error,
                tr.lease_owner,
            ]
            earlier = updates.get(task_id)
            updates[task_id] = row if earlier is None else _merged(earlier, row)
            outcome = tr.outcome
            if started_at is not None or outcome is not None:
                execs.append(
                    (
                        task_id,
                        attempt,
                        started_at,
                        tr.finished_at,
                        outcome_text[outcome],
                        None if outcome is None else error,
                        tr.worker,
                    )
                )
        if updates:
            update_rows = list(updates.values())
            changed = execute_rows(conn, _SQL["task_transition"], _TRANSITION_WIDTH, update_rows)
            if changed != len(update_rows):  # the SQL guard disagrees with the rule above
                raise CountsDiverged(f"{changed} of {len(update_rows)} transitions applied")
            if execs:
                execute_rows(conn, _SQL["execution_upsert"], _EXECUTION_WIDTH, execs)
            _add_counts(conn, deltas)
        return refused

    return job


_TRANSITION_WIDTH = 10
_EXECUTION_WIDTH = 7
# Columns of a transition row that keep the earlier value when a later report leaves them
# NULL (task_transition.sql's coalesce): run_at, started_at, finished_at, result, error.
_COALESCED = range(4, 9)


def _merged(earlier: list[Any], later: list[Any]) -> list[Any]:
    """Two transition rows of one task as one: ``later`` over ``earlier``."""
    for i in _COALESCED:
        if later[i] is None:
            later[i] = earlier[i]
    return later


# ---- set-based state changes -----------------------------------------------------------------


def _from_states(ids: Sequence[str], states: str, sql: str, now: float, to: str) -> Job:
    """An UPDATE of ``ids`` whose WHERE allows old ``states`` and which sets state ``to``;
    the old states are counted first with the same WHERE."""
    id_list = rows.json_list(ids)

    def job(conn: sqlite3.Connection) -> list[str]:
        deltas: Counter[str] = Counter()
        for state, n in conn.execute(_SQL["task_states_of"], (id_list, states)):
            deltas[state] -= n
            deltas[to] += n  # ``to`` is never one of ``states``
        changed = [r[0] for r in conn.execute(sql, (now, id_list))]
        if len(changed) != deltas[to]:
            raise CountsDiverged(f"{len(changed)} rows changed, {deltas[to]} counted")
        _add_counts(conn, deltas)
        return changed

    return job


def cancel_job(ids: Sequence[str], now: float) -> Job:
    return _from_states(ids, _CANCELLABLE, _SQL["task_cancel"], now, "cancelled")


def retry_job(ids: Sequence[str], now: float) -> Job:
    return _from_states(ids, _RETRYABLE, _SQL["task_retry"], now, "queued")


def claim_job(
    owner: str, limit: int, now: float, horizon: float, skip: Sequence[str], rows_as_json: bool
) -> Job:
    """``rows_as_json``: read the claimed rows back in one step (task_rows_json.sql) rather
    than one row per step; only where SQLite prints doubles exactly (rows.py). The job
    returns the rows, not tasks (store.py builds them): building 1,000 tasks was ~10% of the
    writer thread's time in a drain, time every submission queued behind it waited for."""
    pick = {"limit": limit, "now": now, "horizon": horizon, "skip": rows.json_list(skip)}

    def job(conn: sqlite3.Connection) -> list[Any]:
        ids, promoted = conn.execute(_SQL["task_claim_pick"], pick).fetchone()
        if ids == "[]":
            return []
        args = {"owner": owner, "now": now, "ids": ids}
        changed = conn.execute(_SQL["task_claim"], args).rowcount
        claimed = rows.read_task_rows(conn, ids, rows_as_json)
        if changed != len(claimed):  # picked in this transaction: every one is claimable
            raise CountsDiverged(f"{changed} of {len(claimed)} picked tasks claimed")
        _add_counts(conn, Counter({"scheduled": -promoted, "queued": promoted}))
        return claimed

    return job


def recover_job(now: float, owners: Sequence[str] | None) -> Job:
    who = None if owners is None else rows.json_list(owners)

    def job(conn: sqlite3.Connection) -> RecoveryReport:
        conn.execute(_SQL["recover_executions"], (now, who))
        running = conn.execute(_SQL["recover_running"], (now, who)).rowcount
        # Counts only the leases of tasks that were not running (those are counted above).
        leases = conn.execute(_SQL["recover_leases"], (who,)).rowcount
        _add_counts(conn, Counter({"running": -running, "queued": running}))
        return RecoveryReport(requeued_running=running, released_leases=leases)

    return job


def release_dependents_job(finished_ids: Sequence[str], now: float) -> Job:
    args = (now, rows.json_list(finished_ids))

    def job(conn: sqlite3.Connection) -> DependencyRelease:
        # Both statements change only pending tasks.
        cancelled = [r[0] for r in conn.execute(_SQL["dependents_cancel"], args)]
        ready = [rows.task_from_row(r) for r in conn.execute(_SQL["dependents_ready"], args)]
        deltas = Counter(t.state.value for t in ready)
        deltas["cancelled"] += len(cancelled)
        deltas["pending"] -= len(cancelled) + len(ready)
        _add_counts(conn, deltas)
        return DependencyRelease(ready=ready, cancelled=cancelled)

    return job

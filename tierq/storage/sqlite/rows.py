"""Rows to model objects and back, and the list query built from fixed fragments.

Rows are read positionally in the column order of ``tasks`` (migrations/001_init.sql);
every SELECT in sql/ names the columns in that order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from tierq.model import DEFAULT_TENANT, Execution, Outcome, Task, TaskFilter, TaskState
from tierq.storage.sqlite.sqlfiles import load, load_sections
from tierq.storage.text import without_nul

_STATES: dict[str, TaskState] = {s.value: s for s in TaskState}
_OUTCOMES: dict[str, Outcome] = {o.value: o for o in Outcome}
# Parameters are bound as exact str: ``.value`` of an enum member is a Python-level property,
# and sqlite3 binds a str subclass only after an adapter search (several times the cost).
STATE_TEXT: dict[TaskState, str] = {s: s.value for s in TaskState}
OUTCOME_TEXT: dict[Outcome | None, str | None] = {None: None, **{o: o.value for o in Outcome}}


# sqlite3 searches for an adapter for every parameter that is not exactly an int, float or str
# (NULL and bytes included): a miss is a registry lookup and two failed attribute lookups per
# value, with the GIL held, for a dozen values of every row inserted. A registered identity
# adapter ends the search at the registry; what is bound is unchanged.
def _null_as_is(value: None) -> None:
    return value


def _bytes_as_is(value: bytes) -> bytes:
    return value


sqlite3.register_adapter(type(None), _null_as_is)
sqlite3.register_adapter(bytes, _bytes_as_is)

_LIST = load_sections("task_list")
_ROWS_JSON = load("task_rows_json")
_GET_MANY = load("task_get_many")

TaskRow = tuple[Any, ...]
TASK_COLUMNS = 29  # columns of ``tasks``, in the order task_params gives them


def task_params(t: Task) -> TaskRow:
    """Insert parameters of one task, in ``tasks`` column order."""
    return (
        t.id,
        t.type,
        t.queue,
        int(t.priority),
        STATE_TEXT[t.state],
        t.payload,
        t.run_at,
        t.created_at,
        t.updated_at,
        t.max_retries,
        t.timeout_s,
        t.attempt,
        t.attempt_base,
        t.name,
        t.description,
        # Looked up through json_each (writes.insert_job), which would cut it at a NUL.
        None if t.idempotency_key is None else without_nul(t.idempotency_key),
        orjson.dumps(t.depends_on).decode() if t.depends_on else None,
        t.notify,
        t.result,
        t.last_error,
        t.started_at,
        t.finished_at,
        t.lease_owner,
        t.schedule_id,
        t.scheduled_for,
        t.tenant,
        t.breaker,
        t.request_id,
        t.traceparent,
    )


def task_from_row(r: Sequence[Any]) -> Task:
    deps = r[16]
    return Task(
        id=r[0],
        type=r[1],
        queue=r[2],
        priority=r[3],
        state=_STATES[r[4]],
        payload=r[5],
        # float(): task_rows_json.sql sends REALs as text (printed exactly), and a whole
        # number bound as an int keeps that type until the column's affinity applies.
        run_at=float(r[6]),
        created_at=float(r[7]),
        updated_at=float(r[8]),
        max_retries=r[9],
        timeout_s=float(r[10]),
        attempt=r[11],
        attempt_base=r[12],
        name=r[13],
        description=r[14],
        idempotency_key=r[15],
        depends_on=tuple(orjson.loads(deps)) if deps else (),
        notify=r[17],
        result=r[18],
        last_error=r[19],
        started_at=None if r[20] is None else float(r[20]),
        finished_at=None if r[21] is None else float(r[21]),
        lease_owner=r[22],
        schedule_id=r[23],
        scheduled_for=None if r[24] is None else float(r[24]),
        tenant=r[25],
        breaker=r[26],
        request_id=r[27],
        traceparent=r[28],
    )


# Columns task_rows_json.sql sends as hex (BLOBs): payload, notify, result. Its REALs come as
# text, which task_from_row's float() reads as it reads a REAL.
_HEX_COLUMNS = (5, 17, 18)


def task_from_json(r: list[Any]) -> Task:
    """A task from one element of task_rows_json.sql's array."""
    for i in _HEX_COLUMNS:
        value = r[i]
        if value is not None:
            r[i] = bytes.fromhex(value)
    return task_from_row(r)


# Doubles that task_rows_json.sql must print exactly (17 significant digits read back as
# the same double): the kinds of value the REAL columns hold, times since the epoch and
# durations. SQLite prints with its own code, in long double where the platform has one
# (here it misses only near the largest double, 1.8e308, which no column holds); where this
# check fails, the store reads task rows one by one instead.
FLOAT_TEXT_CHECK = (
    0.1, 1 / 3, 2 / 3, 1e-7, 1e-6, 0.0, 30.5, 86_400.0, 3_600.000_001, 1e9 / 7,
    1_700_000_000.123456, 1_764_000_000.9999998, 4_102_444_800.000001, 253_402_300_799.999_99,
    *(1_700_000_000 + k / 7919 for k in range(1, 200)),
    *(1_764_000_000 + k * 0.000_123_7 for k in range(1, 200)),
)  # fmt: skip


def prints_floats_exactly(conn: sqlite3.Connection) -> bool:
    sql = "SELECT json_group_array(printf('%!.17g', value)) FROM json_each(?1)"
    (printed,) = conn.execute(sql, (orjson.dumps(FLOAT_TEXT_CHECK).decode(),)).fetchone()
    return [float(text) for text in orjson.loads(printed)] == list(FLOAT_TEXT_CHECK)


def read_tasks(
    conn: sqlite3.Connection, ids: str, as_json: bool, tenant: str | None = None
) -> list[Task]:
    """The tasks whose ids ``ids`` (a JSON array) holds, of ``tenant`` (None: any), in no
    particular order: in one step (task_rows_json.sql) when ``as_json``, else one row per
    step."""
    return decode_tasks(read_task_rows(conn, ids, as_json, tenant), as_json)


def read_task_rows(
    conn: sqlite3.Connection, ids: str, as_json: bool, tenant: str | None = None
) -> list[Any]:
    """``read_tasks`` without building the tasks: the rows, for ``decode_tasks`` to turn
    into tasks in another thread than the one holding the connection."""
    if as_json:
        (found,) = conn.execute(_ROWS_JSON, (ids, tenant)).fetchone()
        rows: list[Any] = orjson.loads(found)
        return rows
    return conn.execute(_GET_MANY, (ids, tenant)).fetchall()


def decode_tasks(rows: Sequence[Any], as_json: bool) -> list[Task]:
    """Tasks from ``read_task_rows``'s rows (read with the same ``as_json``)."""
    if as_json:
        return [task_from_json(r) for r in rows]
    return [task_from_row(r) for r in rows]


def execution_from_row(r: Sequence[Any]) -> Execution:
    return Execution(
        task_id=r[0],
        attempt=r[1],
        started_at=r[2],
        finished_at=r[3],
        outcome=_OUTCOMES[r[4]] if r[4] is not None else None,
        error=r[5],
        worker=r[6],
    )


def state_from_text(text: str) -> TaskState:
    return _STATES[text]


def json_list(values: Sequence[str]) -> str:
    """Id lists travel as one JSON text parameter, unpacked in SQL with json_each()."""
    return orjson.dumps(list(values)).decode()


def list_query(flt: TaskFilter) -> tuple[str, list[Any]]:
    """SQL and parameters of one page of ``flt``: one row, a JSON array of up to
    ``size + 1`` ids in page order (one more than the page, so the caller can tell whether
    there is a next page). ``RecordStore.task_list`` has checked the filter."""
    terms: list[str] = []
    params: list[Any] = []
    if flt.states is not None:
        if len(flt.states) == 1:
            terms.append(_LIST["state_one"])
            params.append(flt.states[0].value)
        else:
            terms.append(_LIST["state_many"])
            params.append(json_list([s.value for s in flt.states]))
    if flt.tenant is not None:
        # Another tenant than the default: the constant term lets the planner use the
        # partial index of those tenants' tasks (a bound value alone proves nothing).
        terms.append(_LIST["tenant" if flt.tenant == DEFAULT_TENANT else "tenant_other"])
        params.append(flt.tenant)
    for column, value in (
        ("type", flt.type),
        ("queue", flt.queue),
        ("priority", flt.priority),
        ("schedule_id", flt.schedule_id),
    ):
        if value is not None:
            terms.append(_LIST[column])
            params.append(value)
    if flt.dependent_of is not None:
        terms.append(_LIST["dependent_of"])
        params.append(flt.dependent_of)
    if flt.name_prefix is not None:
        terms.append(_LIST["name_prefix"])
        params.extend((flt.name_prefix, flt.name_prefix + "\U0010ffff"))
    for path, wanted in flt.payload:
        terms.append(_LIST["payload_field"])
        # json_extract gives true and false as 1 and 0.
        params.extend(("$." + ".".join(path), int(wanted) if isinstance(wanted, bool) else wanted))
    if flt.searching and flt.search_cap is not None:
        terms.append(_LIST["search_cap"])
        params.append(flt.search_cap - 1)
    direction = "desc" if flt.descending else "asc"
    offset = flt.page * flt.size
    if flt.after_id is not None:
        terms.append(_LIST[f"after_{direction}"])
        params.append(flt.after_id)
        offset = 0
    parts = [_LIST["page_open"], _LIST["select"]]
    if terms:
        parts.append("WHERE " + "\n  AND ".join(terms))
    parts.append(_LIST[f"order_{flt.sort_field}_{direction}"])
    parts.append(_LIST["limit"])
    parts.append(_LIST["page_close"])
    params.extend((flt.size + 1, offset))
    return "\n".join(parts), params


def page_order(flt: TaskFilter) -> Callable[[Task], Any]:
    """The sort key of the list query's ORDER BY (task_list.sql), for putting a page read
    back in order: the field, then id (ids sort like their creation time)."""
    field = flt.sort_field
    if field == "created_at":
        return lambda t: t.id
    return lambda t: (getattr(t, field), t.id)

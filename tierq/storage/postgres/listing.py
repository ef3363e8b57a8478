"""The task list query, assembled from fixed fragments and numbered placeholders.

Only the filters present become conditions, so the planner can use tasks_state_id_idx for a
state filter and the primary key for "newest first" (ids are time-ordered, so id order is
creation order: sorting by created_at sorts by id). Values are always bind parameters.
"""

from __future__ import annotations

from typing import Any

import orjson

from tierq.model import DEFAULT_TENANT, TaskFilter
from tierq.storage.postgres.queries import TASK_LIST_SELECT

# Sort columns other than created_at; id breaks ties so pages never overlap or skip.
_SORT_COLUMNS = {"priority": "priority", "run_at": "run_at", "updated_at": "updated_at"}
_DIRECTION = {True: "DESC", False: "ASC"}
_AFTER = {True: "id < ${n}::uuid", False: "id > ${n}::uuid"}


def list_query(flt: TaskFilter) -> tuple[str, list[Any]]:
    """SQL and arguments for one page of ``flt``; the page holds up to ``size + 1`` rows so
    the caller can tell whether there is more. ``RecordStore.task_list`` has checked it."""
    conds: list[str] = []
    args: list[Any] = []

    def bind(fragment: str, value: Any) -> None:
        args.append(value)
        conds.append(fragment.replace("${n}", f"${len(args)}"))

    if flt.states is not None and len(flt.states) == 1:
        # Equality, not ANY: PostgreSQL 15 walks tasks_state_id_idx in id order only for
        # "state = x", so a rare state among millions is found without a scan.
        bind("state = ${n}", flt.states[0].value)
    elif flt.states is not None:
        bind("state = ANY(${n}::text[])", [s.value for s in flt.states])
    if flt.tenant == DEFAULT_TENANT:
        bind("tenant = ${n}", flt.tenant)
    elif flt.tenant is not None:
        # The constant term lets the planner use the partial index of the non-default
        # tenants' tasks (a parameter alone proves nothing, in a generic plan above all).
        bind("tenant <> 'default' AND tenant = ${n}", flt.tenant)
    if flt.type is not None:
        bind("type = ${n}", flt.type)
    if flt.queue is not None:
        bind("queue = ${n}", flt.queue)
    if flt.priority is not None:
        bind("priority = ${n}", flt.priority)
    if flt.schedule_id is not None:
        bind("schedule_id = ${n}", flt.schedule_id)
    if flt.dependent_of is not None:
        bind(
            "id IN (SELECT task_id FROM task_dependencies WHERE depends_on_id = ${n}::uuid)",
            flt.dependent_of,
        )
    if flt.name_prefix is not None:
        bind("starts_with(name, ${n})", flt.name_prefix)
    for path, value in flt.payload:
        # payload is json: the field as jsonb, compared with the value as JSON.
        args.append(list(path))
        bind(
            f"(payload #> ${len(args)}::text[])::jsonb = ${{n}}::jsonb",
            orjson.dumps(value).decode(),
        )
    if flt.searching and flt.search_cap is not None:
        # The newest N tasks only: ids from the N-th newest on (all of them when fewer).
        bind(
            "id >= coalesce((SELECT id FROM tasks ORDER BY id DESC LIMIT 1 OFFSET ${n}), "
            "'00000000-0000-0000-0000-000000000000'::uuid)",
            flt.search_cap - 1,
        )
    if flt.after_id is not None:
        bind(_AFTER[flt.descending], flt.after_id)
    direction = _DIRECTION[flt.descending]
    if flt.sort_field == "created_at":
        order = f"id {direction}"
    else:
        order = f"{_SORT_COLUMNS[flt.sort_field]} {direction}, id {direction}"
    offset = 0 if flt.after_id is not None else flt.page * flt.size
    args.extend((flt.size + 1, offset))
    sql = TASK_LIST_SELECT
    if conds:
        sql += " WHERE " + " AND ".join(conds)
    sql += f" ORDER BY {order} LIMIT ${len(args) - 1} OFFSET ${len(args)}"
    return sql, args

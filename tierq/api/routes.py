"""Route handlers of API v1: parse the request, call the engine, shape the answer.
No queue logic here."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from tierq import tracing
from tierq.api.auth.access import ACCESS, AUDIT_RESOURCE, PRINCIPAL, charge
from tierq.api.errors import REQUEST_ID, ApiError
from tierq.api.permissions import Permission
from tierq.api.routing import Param, Route
from tierq.api.schemas import decode_tasks, encode, execution_out, task_out
from tierq.api.shapes import Alive, BatchOut, ExecutionsOut, TaskOut, TaskPage
from tierq.config import Settings
from tierq.engine.engine import Engine
from tierq.engine.errors import FieldError
from tierq.engine.intake import TaskIn, parse_priority
from tierq.engine.reports import Health, Readiness, Statistics, Workers
from tierq.ids import is_valid_id
from tierq.model import SEARCH_PATH_PART, SORT_FIELDS, TaskFilter, TaskState

ENGINE = web.AppKey("engine", Engine)
SETTINGS = web.AppKey("settings", Settings)
MAX_PAGE_SIZE = 1000
# GET /api/v1/tasks/{id}?wait_seconds=N: the longest a request may wait for the task to end.
MAX_WAIT_S = 60.0
# OFFSET paging reads and discards every skipped row: deeper than this, keyset paging only.
MAX_OFFSET = 100_000
# A search (name prefix, payload fields) has no index: it looks at the newest tasks only.
SEARCH_CAP = 100_000
MAX_PAYLOAD_TERMS = 5
# ASCII digits only (str.isdigit() accepts "²", which int() refuses), and short enough that
# int() never meets its digit limit; anything else is parsed as a priority name.
_PRIORITY_INT = re.compile(r"[+-]?[0-9]{1,12}")


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=encode(data), content_type="application/json")


async def read_json_body(request: web.Request) -> bytes:
    if request.content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "Content-Type must be application/json",
            {"content_type": request.content_type},
        )
    body = await request.read()
    if not body:
        raise ApiError(400, "malformed_json", "request body is empty")
    return body


def scope(request: web.Request) -> str | None:
    """The tenant the caller's reads and changes are confined to (None: every tenant)."""
    return request[PRINCIPAL].scope


def task_id_param(request: web.Request) -> str:
    task_id = request.match_info["task_id"].lower()
    if not is_valid_id(task_id):
        raise ApiError(400, "bad_id", "not a task id (UUID expected)", {"id": task_id})
    return task_id


def shed_load(request: web.Request) -> None:
    """503 before a submission queues in memory behind too many others (the record tier is
    not keeping up): the client retries later, and memory stays bounded."""
    limit = request.app[SETTINGS].shed_waiting_submissions
    if limit and request.app[ENGINE].committer.waiting >= limit:
        request.app[ACCESS].refused("shed")
        raise ApiError(
            503,
            "overloaded",
            "too many submissions are waiting for the record tier; retry later",
            headers={"Retry-After": "1"},
        )


async def submit_one(request: web.Request) -> web.Response:
    shed_load(request)
    specs = decode_tasks(await read_json_body(request), batch=False)
    owner = request[PRINCIPAL].owner
    engine = request.app[ENGINE]
    with tracing.span("tierq.submit", **{"tierq.tasks": 1}):
        (result,) = await engine.submit(specs, False, owner, request[REQUEST_ID])
    request[AUDIT_RESOURCE] = result.task.id
    return json_response(task_out(result.task), 201 if result.created else 200)


async def submit_batch(request: web.Request) -> web.Response:
    shed_load(request)
    specs = decode_tasks(await read_json_body(request), batch=True)
    await charge(request, len(specs))
    owner = request[PRINCIPAL].owner
    with tracing.span("tierq.submit", **{"tierq.tasks": len(specs)}):
        results = await request.app[ENGINE].submit(specs, True, owner, request[REQUEST_ID])
    request[AUDIT_RESOURCE] = f"{len(results)} tasks"
    existing = [i for i, r in enumerate(results) if not r.created]
    return json_response(BatchOut([r.task.id for r in results], len(results), existing), 201)


async def get_task(request: web.Request) -> web.Response:
    task_id = task_id_param(request)
    raw_wait = request.query.get("wait_seconds")
    if raw_wait:
        try:
            wait_s = float(raw_wait)
        except ValueError:
            wait_s = -1.0
        if not 0 <= wait_s <= MAX_WAIT_S:
            raise ApiError(
                400,
                "bad_parameter",
                f"wait_seconds must be a number from 0 to {MAX_WAIT_S:g}",
                {"parameter": "wait_seconds"},
            )
        task = await request.app[ENGINE].wait_finished(task_id, wait_s, scope(request))
    else:
        task = await request.app[ENGINE].get(task_id, scope(request))
    return json_response(task_out(task))


async def cancel_task(request: web.Request) -> web.Response:
    task = await request.app[ENGINE].cancel(task_id_param(request), scope(request))
    return json_response(task_out(task))


async def retry_task(request: web.Request) -> web.Response:
    task = await request.app[ENGINE].retry(task_id_param(request), scope(request))
    return json_response(task_out(task))


async def task_executions(request: web.Request) -> web.Response:
    task_id = task_id_param(request)
    executions = await request.app[ENGINE].executions(task_id, scope(request))
    return json_response(ExecutionsOut(task_id, [execution_out(e) for e in executions]))


def time_param(request: web.Request, name: str) -> float | None:
    """An ISO 8601 time in the query (UTC when it names no zone), as epoch seconds."""
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, "bad_parameter", f"{name} must be an ISO 8601 time", {"parameter": name}
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            400, "bad_parameter", f"{name} must be an integer", {"parameter": name}
        ) from None
    if value < low:
        raise ApiError(400, "bad_parameter", f"{name} must be >= {low}", {"parameter": name})
    return min(value, high)


def parse_filter(request: web.Request) -> TaskFilter:
    query = request.query
    states: tuple[TaskState, ...] | None = None
    if query.get("status"):
        try:
            states = tuple(TaskState(s.strip().lower()) for s in query["status"].split(","))
        except ValueError:
            allowed = ", ".join(s.value for s in TaskState)
            raise ApiError(
                400, "bad_parameter", f"status must be among: {allowed}", {"parameter": "status"}
            ) from None
    priority = None
    if query.get("priority"):
        raw = query["priority"].strip()
        try:
            value: int | str = int(raw) if _PRIORITY_INT.fullmatch(raw) else raw
            priority = parse_priority(value, "priority")
        except FieldError as exc:
            raise ApiError(
                400, "bad_parameter", f"priority {exc.message}", {"parameter": "priority"}
            ) from None
    sort_field, descending = "created_at", True
    if query.get("sort"):
        field, _, direction = query["sort"].partition(",")
        if field not in SORT_FIELDS or direction.lower() not in ("", "asc", "desc"):
            raise ApiError(
                400,
                "bad_parameter",
                f"sort must be FIELD[,asc|desc] with FIELD among {', '.join(SORT_FIELDS)}",
                {"parameter": "sort"},
            )
        sort_field, descending = field, direction.lower() != "asc"
    after = query.get("after") or None
    if after is not None:
        if not is_valid_id(after.lower()):
            raise ApiError(400, "bad_parameter", "after must be a task id", {"parameter": "after"})
        if sort_field != "created_at":
            raise ApiError(
                400,
                "bad_parameter",
                "after (keyset paging) needs sort=created_at",
                {"parameter": "after"},
            )
    # Clamped just past the limit, so a page beyond it is refused below, not served.
    page = int_param(request, "page", 0, 0, MAX_OFFSET + 1)
    size = int_param(request, "size", 50, 1, MAX_PAGE_SIZE)
    if page * size > MAX_OFFSET:
        raise ApiError(
            400,
            "bad_parameter",
            f"page * size may skip at most {MAX_OFFSET} rows; page deeper with keyset paging: "
            "sort=created_at and after=<next_after of the previous page>",
            {"parameter": "page"},
        )
    name_prefix, payload = search_terms(request)
    dependent_of = query.get("depends_on") or None
    if dependent_of is not None and not is_valid_id(dependent_of.lower()):
        raise ApiError(
            400, "bad_parameter", "depends_on must be a task id", {"parameter": "depends_on"}
        )
    schedule_id = query.get("schedule_id") or None
    if schedule_id is not None and not is_valid_id(schedule_id.lower()):
        raise ApiError(
            400, "bad_parameter", "schedule_id must be a schedule id", {"parameter": "schedule_id"}
        )
    return TaskFilter(
        tenant=scope(request),
        states=states,
        schedule_id=schedule_id.lower() if schedule_id else None,
        type=query.get("type") or None,
        queue=query.get("queue") or None,
        priority=priority,
        sort_field=sort_field,
        descending=descending,
        page=page,
        size=size,
        after_id=after.lower() if after else None,
        dependent_of=dependent_of.lower() if dependent_of else None,
        name_prefix=name_prefix,
        payload=payload,
        search_cap=SEARCH_CAP,
    )


def search_terms(
    request: web.Request,
) -> tuple[str | None, tuple[tuple[tuple[str, ...], str | int | float | bool], ...]]:
    """``name=<prefix>`` and ``payload.<field>[.<field>]=<value>`` (a number, true, false,
    or else a string), as a filter's search terms."""
    name = request.query.get("name") or None
    if name is not None and len(name) > 200:
        raise ApiError(400, "bad_parameter", "name is a prefix of at most 200 characters",
                       {"parameter": "name"})  # fmt: skip
    terms = []
    for key, raw in request.query.items():
        if not key.startswith("payload."):
            continue
        path = tuple(key[len("payload.") :].split("."))
        if len(path) > 8 or not all(SEARCH_PATH_PART.fullmatch(p) for p in path):
            raise ApiError(400, "bad_parameter", "payload.<field>: letters, digits, _ and - "
                           "only, dotted, at most 8 deep", {"parameter": key})  # fmt: skip
        terms.append((path, _scalar(raw)))
    if len(terms) > MAX_PAYLOAD_TERMS:
        raise ApiError(400, "bad_parameter", f"at most {MAX_PAYLOAD_TERMS} payload fields",
                       {"parameter": "payload"})  # fmt: skip
    return name, tuple(terms)


def _scalar(raw: str) -> str | int | float | bool:
    if raw in ("true", "false"):
        return raw == "true"
    if _PRIORITY_INT.fullmatch(raw):
        return int(raw)
    try:
        number = float(raw)
    except ValueError:
        return raw
    return number if number == number and abs(number) != float("inf") else raw


async def list_tasks(request: web.Request) -> web.Response:
    flt = parse_filter(request)
    page = await request.app[ENGINE].list_tasks(flt)
    items = [task_out(t) for t in page.items]
    more = page.has_more and items and flt.sort_field == "created_at"
    searched = None
    if flt.searching:
        total = sum((await request.app[ENGINE].store.task_counts(None)).values())
        searched = min(total, SEARCH_CAP)
    return json_response(
        TaskPage(
            items,
            flt.page,
            flt.size,
            page.has_more,
            items[-1].id if more else None,
            searched,
            None if searched is None else searched < total,
        )
    )


async def statistics(request: web.Request) -> web.Response:
    return json_response(await request.app[ENGINE].reports.statistics(scope(request)))


async def health(request: web.Request) -> web.Response:
    report = await request.app[ENGINE].reports.health()
    return json_response(report, 200 if report.ok else 503)


async def health_live(request: web.Request) -> web.Response:
    return json_response(Alive("alive"))


async def health_ready(request: web.Request) -> web.Response:
    report = await request.app[ENGINE].reports.readiness()
    return json_response(report, 200 if report.ok else 503)


async def health_workers(request: web.Request) -> web.Response:
    return json_response(await request.app[ENGINE].reports.workers())


_READ, _OPERATE = Permission.TASKS_READ, Permission.TASKS_OPERATE
_ONE = "/api/v1/tasks/{task_id}"
_STATES = ",".join(s.value for s in TaskState)
FILTER_PARAMS = (
    Param("status", str, f"comma list among {_STATES}"),
    Param("type", str, "task type"),
    Param("queue", str, "queue name"),
    Param("priority", str, "LOW, MEDIUM, HIGH, CRITICAL or an integer"),
    Param("schedule_id", str, "tasks fired by this schedule"),
    Param("name", str, "name prefix (a search: the newest 100,000 tasks)"),
    Param("depends_on", str, "the tasks that depend on this task id (its children)"),
    Param("sort", str, f"FIELD[,asc|desc], FIELD among {', '.join(SORT_FIELDS)}"),
    Param("after", str, "keyset paging: next_after of the previous page (sort=created_at)"),
    Param("page", int, f"offset paging: page number from 0 (page * size <= {MAX_OFFSET})"),
    Param("size", int, f"page size, 1 to {MAX_PAGE_SIZE} (default 50)"),
)
_TASK = ((200, TaskOut),)
ROUTES = [
    Route(
        "POST",
        "/api/v1/tasks",
        submit_one,
        Permission.TASKS_SUBMIT,
        "Submit one task",
        body=TaskIn,
        answers=((201, TaskOut), (200, TaskOut)),
        description="201 once committed; 200 when its idempotency_key names an existing task.",
    ),
    Route(
        "POST",
        "/api/v1/tasks/batch",
        submit_batch,
        Permission.TASKS_SUBMIT,
        "Submit a batch of tasks in one commit",
        body=list[TaskIn],
        answers=((201, BatchOut),),
    ),
    Route(
        "GET",
        "/api/v1/tasks",
        list_tasks,
        _READ,
        "List tasks (filters, pages)",
        answers=((200, TaskPage),),
        params=FILTER_PARAMS,
        description="Search: name=<prefix> and payload.<field>[.<field>]=<value> (a number, "
        "true, false, else a string; up to 5) look at the newest 100,000 tasks, and the "
        "answer says how many it looked at (searched, search_capped).",
    ),
    Route(
        "GET",
        "/api/v1/tasks/statistics",
        statistics,
        _READ,
        "Task counts and tier depths",
        answers=((200, Statistics),),
    ),
    Route(
        "GET",
        _ONE,
        get_task,
        _READ,
        "Get a task (optionally wait for it to end)",
        answers=_TASK,
        params=(Param("wait_seconds", float, f"wait up to 0..{MAX_WAIT_S:g} s for it to end"),),
    ),
    Route("DELETE", _ONE, cancel_task, _OPERATE, "Cancel a task", answers=_TASK),
    Route("POST", _ONE + "/cancel", cancel_task, _OPERATE, "Cancel a task", answers=_TASK),
    Route(
        "POST",
        _ONE + "/retry",
        retry_task,
        _OPERATE,
        "Run a failed or cancelled task again",
        answers=_TASK,
    ),
    Route(
        "GET",
        _ONE + "/executions",
        task_executions,
        _READ,
        "A task's attempts",
        answers=((200, ExecutionsOut),),
    ),
    Route(
        "GET",
        "/health",
        health,
        Permission.PUBLIC,
        "Health of every tier",
        answers=((200, Health), (503, Health)),
    ),
    Route(
        "GET",
        "/health/live",
        health_live,
        Permission.PUBLIC,
        "Liveness probe",
        answers=((200, Alive),),
    ),
    Route(
        "GET",
        "/health/ready",
        health_ready,
        Permission.PUBLIC,
        "Readiness probe",
        answers=((200, Readiness), (503, Readiness)),
    ),
    Route(
        "GET",
        "/health/workers",
        health_workers,
        Permission.PUBLIC,
        "Replicas and workers",
        answers=((200, Workers),),
    ),
]

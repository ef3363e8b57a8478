"""``tierq tasks list|get|cancel|retry|wait``, ``tierq events``, ``tierq stats``: a running
server's tasks, events and counts, through the Python client (``cli/remote.py`` has the
options, the output and the exit codes)."""

from __future__ import annotations

import argparse
import itertools
import json
from typing import Any

from tierq.cli import remote
from tierq.client import WaitTimeout
from tierq.model import TaskState

TASK_COLUMNS = ("id", "type", "queue", "priority", "status", "attempt", "created_at", "name")
EVENT_COLUMNS = ("at", "event", "task_id", "queue", "type", "attempt", "node")


def add_parsers(sub: Any) -> None:
    tasks = sub.add_parser("tasks", help="list, show, cancel, retry or wait for tasks")
    action = tasks.add_subparsers(dest="action", required=True)
    listing = action.add_parser("list", help="newest first")
    remote.add_options(listing)
    listing.add_argument("--status", help="comma list, e.g. failed,cancelled")
    listing.add_argument("--queue")
    listing.add_argument("--type")
    listing.add_argument("--priority")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.set_defaults(run=remote.guarded(list_tasks))
    for name, text, command in (
        ("get", "show one task", get_task),
        ("cancel", "cancel a task", cancel_task),
        ("retry", "run a failed or cancelled task again", retry_task),
    ):
        one = action.add_parser(name, help=text)
        remote.add_options(one)
        one.add_argument("id")
        one.set_defaults(run=remote.guarded(command))
    wait = action.add_parser("wait", help="wait for a task to end (exit 0: succeeded)")
    remote.add_options(wait)
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float, default=60.0)
    wait.set_defaults(run=remote.guarded(wait_task))

    events = sub.add_parser("events", help="print task events (--follow: live)")
    remote.add_options(events)
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.add_argument("--after", help="start after this cursor")
    events.add_argument("--queue")
    events.add_argument("--type")
    events.add_argument("--task-id")
    events.add_argument("--event", help="comma list of event names")
    events.add_argument("--limit", type=int, help="stop after this many events")
    events.set_defaults(run=remote.guarded(print_events))

    stats = sub.add_parser("stats", help="task counts, tier depths and queues")
    remote.add_options(stats)
    stats.set_defaults(run=remote.guarded(show_stats))


def list_tasks(args: argparse.Namespace) -> int:
    filters = {"status": args.status, "queue": args.queue, "type": args.type}
    filters["priority"] = args.priority
    with remote.client(args) as tq:
        pages = tq.list(page_size=min(max(args.limit, 1), 1000), **filters)
        rows = list(itertools.islice(pages, max(args.limit, 0)))
    remote.emit(args, rows, TASK_COLUMNS)
    return remote.OK


def get_task(args: argparse.Namespace) -> int:
    with remote.client(args) as tq:
        remote.emit(args, tq.get(args.id))
    return remote.OK


def cancel_task(args: argparse.Namespace) -> int:
    with remote.client(args) as tq:
        remote.emit(args, tq.cancel(args.id))
    return remote.OK


def retry_task(args: argparse.Namespace) -> int:
    with remote.client(args) as tq:
        remote.emit(args, tq.retry(args.id))
    return remote.OK


def wait_task(args: argparse.Namespace) -> int:
    with remote.client(args) as tq:
        try:
            task = tq.wait(args.id, timeout=args.timeout)
        except WaitTimeout as exc:
            remote.emit(args, exc.task)
            return remote.TIMED_OUT
    remote.emit(args, task)
    return remote.OK if task.status is TaskState.SUCCEEDED else remote.REFUSED


def print_events(args: argparse.Namespace) -> int:
    filters = {"queue": args.queue, "type": args.type, "task_id": args.task_id}
    filters["event"] = args.event
    with remote.client(args) as tq:
        stream = tq.events(after=args.after, follow=args.follow, **filters)
        if args.output == "table":
            print("  ".join(c.upper() for c in EVENT_COLUMNS))
        for count, event in enumerate(stream, 1):
            row = remote.plain(event)
            if args.output == "json":
                print(json.dumps(row), flush=True)
            else:
                print("  ".join(str(row.get(c) or "-") for c in EVENT_COLUMNS), flush=True)
            if args.limit is not None and count >= args.limit:
                break
    return remote.OK


def show_stats(args: argparse.Namespace) -> int:
    with remote.client(args) as tq:
        statistics = remote.plain(tq.statistics())
        queues = remote.plain(tq.queues())
    if args.output == "json":
        print(json.dumps({"statistics": statistics, "queues": queues}, indent=2))
        return remote.OK
    counts = statistics["counts"]
    remote.table([{"state": s, "tasks": n} for s, n in counts.items()], ("state", "tasks"))
    print(f"\ntotal {statistics['total']:,}  mode {statistics['mode']}  node {statistics['node']}")
    if statistics.get("memory"):
        print("memory tier " + json.dumps(statistics["memory"]))
    if statistics.get("dispatch"):
        print("dispatch tier " + json.dumps(statistics["dispatch"]))
    print()
    rows = [
        {
            "queue": q["name"],
            "queued": q["counts"].get("queued", 0),
            "running": q["running"],
            "paused": q["paused"],
            "finished_last_minute": q["finished_last_minute"],
            "oldest_pending_s": q["oldest_pending_age_seconds"],
        }
        for q in queues
    ]
    remote.table(
        rows, ("queue", "queued", "running", "paused", "finished_last_minute", "oldest_pending_s")
    )
    return remote.OK

"""``tierq submit --file tasks.jsonl`` (``-``: stdin): one task per line, sent in batches
with a progress bar (rate, accepted, not accepted).

Every line gets an idempotency key from its position (``<prefix>:<line>``; a line with its
own key keeps it), so running the same command again after a failure sends nothing twice:
lines already accepted answer with their existing task. A batch the server refuses because
of one line is sent again without it; the lines not accepted are listed at the end."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from tierq.cli import remote
from tierq.client import ApiError, Client, TransportError


def add_parser(sub: Any) -> None:
    submit = sub.add_parser("submit", help="submit tasks from a JSON-lines file (- = stdin)")
    remote.add_options(submit)
    submit.add_argument("--file", required=True, help="one task (JSON object) per line")
    submit.add_argument("--batch-size", type=int, default=1000, help="tasks per request")
    submit.add_argument(
        "--key-prefix",
        help="idempotency keys are PREFIX:LINE (default: from the file's path; required "
        "for stdin to resume without duplicates)",
    )
    submit.add_argument("--start-line", type=int, default=1, help="skip the lines before it")
    submit.set_defaults(run=remote.guarded(run))


def _prefix(args: argparse.Namespace) -> str:
    if args.key_prefix:
        return str(args.key_prefix)
    if args.file == "-":
        return "stdin:" + os.urandom(6).hex()  # no resume without --key-prefix
    return "file:" + hashlib.sha256(os.path.abspath(args.file).encode()).hexdigest()[:16]


def _lines(stream: TextIO, start: int) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(stream, 1):
        if number >= start and line.strip():
            yield number, line


class Sender:
    def __init__(self, tq: Client, prefix: str) -> None:
        self.tq = tq
        self.prefix = prefix
        self.accepted = 0
        self.rejected: list[tuple[int, str]] = []  # (line, why)

    def send(self, batch: list[tuple[int, dict[str, Any]]]) -> None:
        """Send one batch; a line the server names as bad is set aside and the rest sent
        again (a batch is all or nothing on the server)."""
        while batch:
            try:
                ids = self.tq.submit_batch([task for _, task in batch])
            except ApiError as exc:
                index = exc.details.get("index")
                if not isinstance(index, int) or not 0 <= index < len(batch):
                    raise
                where = f" at {exc.details.get('field')}" if exc.details.get("field") else ""
                self.rejected.append((batch[index][0], f"{exc.code}: {exc.message}{where}"))
                del batch[index]
                continue
            self.accepted += len(ids)
            return

    def task(self, number: int, line: str) -> dict[str, Any] | None:
        try:
            task = json.loads(line)
        except ValueError as exc:
            self.rejected.append((number, f"not JSON: {exc}"))
            return None
        if not isinstance(task, dict):
            self.rejected.append((number, "not a JSON object"))
            return None
        task.setdefault("idempotency_key", f"{self.prefix}:{number}")
        return task


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        print("tierq: --batch-size must be >= 1", file=sys.stderr)
        return remote.USAGE
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    last_sent = args.start_line - 1
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} lines  {task.fields[rate]:,.0f}/s"),
        TextColumn("accepted {task.fields[accepted]:,}  not accepted {task.fields[rejected]:,}"),
        TimeElapsedColumn(),
        disable=not sys.stderr.isatty(),
        console=None,
    )
    with remote.client(args) as tq, stream, progress:
        sender = Sender(tq, _prefix(args))
        total = None
        if args.file != "-":
            with open(args.file, encoding="utf-8") as counted:
                total = sum(1 for _ in counted) - (args.start_line - 1)
        bar = progress.add_task("submitting", total=total, rate=0, accepted=0, rejected=0)
        batch: list[tuple[int, dict[str, Any]]] = []
        done = 0
        try:
            for number, line in _lines(stream, args.start_line):
                done += 1
                task = sender.task(number, line)
                if task is not None:
                    batch.append((number, task))
                if len(batch) >= args.batch_size:
                    sender.send(batch)
                    last_sent, batch = number, []
                    elapsed = progress.tasks[0].elapsed or 1e-9
                    progress.update(
                        bar,
                        completed=done,
                        rate=done / elapsed,
                        accepted=sender.accepted,
                        rejected=len(sender.rejected),
                    )
            if batch:
                sender.send(batch)
                last_sent = batch[-1][0]
        except TransportError as exc:
            print(
                f"tierq: cannot reach the server ({exc}); lines after {last_sent} were not "
                f"sent: run again with --start-line {last_sent + 1} (the same --key-prefix)",
                file=sys.stderr,
            )
            return remote.UNREACHABLE
        progress.update(bar, completed=done, accepted=sender.accepted)
    for number, why in sender.rejected:
        print(f"line {number}: not accepted: {why}", file=sys.stderr)
    summary = {"accepted": sender.accepted, "not_accepted": len(sender.rejected)}
    print(
        json.dumps(summary)
        if args.output == "json"
        else f"accepted {sender.accepted:,}, not accepted {len(sender.rejected):,}"
    )
    return remote.NOT_ACCEPTED if sender.rejected else remote.OK

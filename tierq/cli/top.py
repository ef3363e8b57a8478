"""``tierq top``: a live terminal view of a running server, refreshed from its API: task
counts and throughput (from successive statistics), latency percentiles of the last minutes
(``/health/metrics``), queues and replicas. ``--iterations N`` draws N frames and exits."""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from tierq.cli import remote
from tierq.client import Client


def add_parser(sub: Any) -> None:
    top = sub.add_parser("top", help="live view of queues, throughput, latency and replicas")
    remote.add_options(top)
    top.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    top.add_argument("--iterations", type=int, help="draw this many frames, then exit")
    top.set_defaults(run=remote.guarded(run))


class Frame:
    """One reading of the server, and the rates since the previous one."""

    def __init__(self, tq: Client, previous: Frame | None) -> None:
        self.at = time.monotonic()
        self.stats = remote.plain(tq.statistics())
        self.queues = remote.plain(tq.queues())
        self.workers = remote.plain(tq.workers())
        self.metrics = remote.plain(tq.metrics(minutes=15))
        self.rates: dict[str, float] = {}
        if previous is not None:
            seconds = max(self.at - previous.at, 1e-6)
            now, then = self.stats["counts"], previous.stats["counts"]
            self.rates = {
                "submitted": (self.stats["total"] - previous.stats["total"]) / seconds,
                "succeeded": (now["succeeded"] - then["succeeded"]) / seconds,
                "failed": (now["failed"] - then["failed"]) / seconds,
            }

    def render(self) -> Group:
        counts = self.stats["counts"]
        head = Table(title=f"tierq · {self.stats['mode']} · {self.stats['node']}", expand=True)
        for state in counts:
            head.add_column(state, justify="right")
        head.add_row(*(f"{n:,}" for n in counts.values()))
        rates = Table(title="per second · latency over 15 min", expand=True)
        for name in (
            "submitted/s",
            "succeeded/s",
            "failed/s",
            "wait p50",
            "wait p99",
            "run p50",
            "run p99",
            "failure rate",
        ):
            rates.add_column(name, justify="right")
        summary = self.metrics["summary"]
        rates.add_row(
            *(
                f"{self.rates[k]:,.1f}" if k in self.rates else "…"
                for k in ("submitted", "succeeded", "failed")
            ),
            _seconds(summary["wait_p50_seconds"]),
            _seconds(summary["wait_p99_seconds"]),
            _seconds(summary["run_p50_seconds"]),
            _seconds(summary["run_p99_seconds"]),
            f"{summary['failure_rate']:.1%}",
        )
        queues = Table(title="queues", expand=True)
        for name in ("queue", "queued", "running", "paused", "done/min", "oldest"):
            queues.add_column(name, justify="left" if name == "queue" else "right")
        for q in self.queues:
            queues.add_row(
                q["name"],
                f"{q['counts'].get('queued', 0):,}",
                str(q["running"]),
                "yes" if q["paused"] else "",
                f"{q['finished_last_minute']:,}",
                _seconds(q["oldest_pending_age_seconds"]),
            )
        replicas = Table(
            title=f"replicas · busy {self.workers['busy']}/{self.workers['workers']} here",
            expand=True,
        )
        for name in ("node", "heartbeat age", "leased"):
            replicas.add_column(name, justify="left" if name == "node" else "right")
        now = time.time()
        for r in self.workers["replicas"] or [
            {"node": self.workers["node"], "last_heartbeat": now, "leased": "-"}
        ]:
            replicas.add_row(r["node"], f"{now - r['last_heartbeat']:.1f}s", str(r["leased"]))
        return Group(head, rates, queues, replicas)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def run(args: argparse.Namespace) -> int:
    console = Console()
    with remote.client(args) as tq:
        frame = Frame(tq, None)
        drawn = 1
        with Live(frame.render(), console=console, auto_refresh=False) as live:
            while args.iterations is None or drawn < args.iterations:
                time.sleep(args.interval)
                frame = Frame(tq, frame)
                live.update(frame.render(), refresh=True)
                drawn += 1
    return remote.OK

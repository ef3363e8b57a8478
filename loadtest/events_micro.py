"""What the event seam costs per task, in process: building the events of a committed group
and of a flushed batch, and counting them into the metrics (1,000 tasks per call).

    PYTHONPATH=. .venv/bin/python loadtest/events_micro.py
"""

from __future__ import annotations

import time

from tests.helpers import record_task
from tierq.engine.events import EventSource
from tierq.engine.instruments import EngineMetrics
from tierq.metrics import Metrics
from tierq.model import Outcome, TaskState, Transition

ROUNDS = 200


def main() -> None:
    source = EventSource("node-1", time.time)
    tasks = [record_task() for _ in range(1000)]
    transitions = [
        Transition(
            t.id,
            1,
            TaskState.SUCCEEDED,
            1.0,
            None,
            0.5,
            1.0,
            None,
            None,
            None,
            "w",
            Outcome.SUCCEEDED,
            t,
        )
        for t in tasks
    ]
    metrics = EngineMetrics(Metrics())
    t0 = time.perf_counter()
    for _ in range(ROUNDS):
        source.submitted(tasks)
    t1 = time.perf_counter()
    for _ in range(ROUNDS):
        flushed = source.flushed(transitions)  # two events each: started and succeeded
    t2 = time.perf_counter()
    for _ in range(ROUNDS):
        metrics.on_events(flushed)
    t3 = time.perf_counter()
    per = ROUNDS * len(tasks)
    print(f"submitted: {(t1 - t0) / per * 1e6:.2f} us per task")
    print(f"flushed:   {(t2 - t1) / per * 1e6:.2f} us per transition (2 events)")
    print(f"counted:   {(t3 - t2) / (ROUNDS * len(flushed.events)) * 1e6:.2f} us per event")


if __name__ == "__main__":
    main()

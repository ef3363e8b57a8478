"""Locust users for tierq: single submissions, batches of 100 and 1,000, status polls, lists.

Headless against one replica (or nginx in front of several):

    .venv/bin/locust -f loadtest/locustfile.py --headless -H http://127.0.0.1:8080 \
        -u 50 -r 10 -t 60s --csv loadtest/results/locust

Pick user classes on the command line (``SingleSubmitter BatchSubmitter ...``) or weight them
with ``--class-picker`` in the UI. Task bodies are built once; ids of submitted tasks feed the
status pollers so they ask for tasks that exist.
"""

from __future__ import annotations

import os
import random
from collections import deque

import orjson
from locust import FastHttpUser, between, constant_throughput, task

JSON = {"Content-Type": "application/json"}
API_KEY = os.environ.get("TIERQ_LOAD_API_KEY")
if API_KEY:
    JSON = {**JSON, "X-API-Key": API_KEY}

TASK = {"type": "noop", "payload": {"source": "locust"}}
ONE = orjson.dumps(TASK)
BATCH_100 = orjson.dumps([TASK] * 100)
BATCH_1000 = orjson.dumps([TASK] * 1000)
# Ids seen recently, shared by the users of this locust process.
RECENT: deque[str] = deque(maxlen=10_000)


class SingleSubmitter(FastHttpUser):
    """One task per request, paced (2 requests/s per user: 1,000 users = 2,000 req/s)."""

    wait_time = constant_throughput(2)
    weight = 6

    @task
    def submit(self) -> None:
        with self.client.post(
            "/api/v1/tasks", data=ONE, headers=JSON, name="POST /tasks", catch_response=True
        ) as r:
            if r.status_code == 201:
                RECENT.append(orjson.loads(r.content)["id"])
                r.success()
            else:
                r.failure(f"status {r.status_code}")


class BatchSubmitter(FastHttpUser):
    wait_time = between(0.5, 1.5)
    weight = 2

    def _batch(self, body: bytes, name: str) -> None:
        with self.client.post(
            "/api/v1/tasks/batch", data=body, headers=JSON, name=name, catch_response=True
        ) as r:
            if r.status_code == 201:
                ids = orjson.loads(r.content)["ids"]
                RECENT.extend(ids[:: max(1, len(ids) // 10)])
                r.success()
            else:
                r.failure(f"status {r.status_code}")

    @task(5)
    def batch_100(self) -> None:
        self._batch(BATCH_100, "POST /tasks/batch (100)")

    @task(1)
    def batch_1000(self) -> None:
        self._batch(BATCH_1000, "POST /tasks/batch (1000)")


class StatusPoller(FastHttpUser):
    wait_time = between(0.1, 0.5)
    weight = 2

    @task(5)
    def status(self) -> None:
        if not RECENT:
            return
        task_id = random.choice(RECENT)
        self.client.get(f"/api/v1/tasks/{task_id}", headers=JSON, name="GET /tasks/{id}")

    @task(2)
    def statistics(self) -> None:
        self.client.get("/api/v1/tasks/statistics", headers=JSON, name="GET /tasks/statistics")

    @task(2)
    def list_recent(self) -> None:
        self.client.get("/api/v1/tasks?size=50", headers=JSON, name="GET /tasks (list)")

    @task(1)
    def list_failed(self) -> None:
        self.client.get(
            "/api/v1/tasks?status=failed&size=20", headers=JSON, name="GET /tasks?status=failed"
        )

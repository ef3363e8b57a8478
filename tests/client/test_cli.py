"""The CLI's commands that talk to a running server (``tierq submit``, ``tasks``, ``events``,
``stats``, ``top``), run as processes against a live embedded server: output, exit codes,
and a file submitted twice making its tasks once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import Live
from tests.system.cluster import free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.parametrize("live", ["embedded"], indirect=True),
]


def tierq(live: Live, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERQ_")}
    env["TIERQ_URL"] = live.url
    env["COLUMNS"] = "200"
    return subprocess.run(
        [sys.executable, "-m", "tierq", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def total(live: Live) -> int:
    done = tierq(live, "stats", "--output", "json")
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["statistics"]["total"])


def test_submit_a_file_twice_makes_each_task_once(live: Live, tmp_path: Path) -> None:
    lines = [json.dumps({"type": "noop", "name": f"n{i}"}) for i in range(1_200)]
    lines[7] = json.dumps({"type": "noop", "queue": "no spaces"})
    lines[11] = "not json"
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(lines) + "\n")
    first = tierq(live, "submit", "--file", str(path), "--batch-size", "500", "--output", "json")
    assert first.returncode == 5, first.stderr
    assert json.loads(first.stdout) == {"accepted": 1_198, "not_accepted": 2}
    assert "line 8: not accepted: validation_error" in first.stderr
    assert "at queue" in first.stderr and "line 12: not accepted: not JSON" in first.stderr
    assert total(live) == 1_198
    again = tierq(live, "submit", "--file", str(path), "--batch-size", "500")
    assert again.returncode == 5
    assert again.stdout.strip() == "accepted 1,198, not accepted 2"
    assert total(live) == 1_198  # the keys from file positions named the same tasks
    piped = "\n".join(lines[:3]) + "\n"
    for _ in range(2):
        done = tierq(live, "submit", "--file", "-", "--key-prefix", "batch-9", stdin=piped)
        assert done.returncode == 0, done.stderr
    assert total(live) == 1_201


def test_submit_to_a_server_that_is_down_says_where_to_resume(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps({"type": "noop"}) + "\n")
    done = tierq(live, "submit", "--file", str(path), "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 3
    assert "--start-line 1" in done.stderr


def test_tasks_commands_and_their_exit_codes(live: Live) -> None:
    ok = tierq(live, "submit", "--file", "-", stdin='{"type": "noop", "name": "one"}\n')
    assert ok.returncode == 0
    listed = tierq(live, "tasks", "list", "--limit", "1", "--output", "json")
    (task,) = json.loads(listed.stdout)
    assert task["name"] == "one"
    table = tierq(live, "tasks", "list", "--limit", "5")
    assert table.stdout.splitlines()[0].split()[:3] == ["ID", "TYPE", "QUEUE"]
    waited = tierq(live, "tasks", "wait", task["id"], "--output", "json")
    assert waited.returncode == 0 and json.loads(waited.stdout)["status"] == "succeeded"
    shown = tierq(live, "tasks", "get", task["id"])
    assert shown.stdout.splitlines()[0].split() == ["id", task["id"]]
    failing = '{"type": "dummy", "payload": {"fail_always": true}, "max_retries": 0}\n'
    tierq(live, "submit", "--file", "-", stdin=failing)
    (bad,) = json.loads(tierq(live, "tasks", "list", "--limit", "1", "--output", "json").stdout)
    assert tierq(live, "tasks", "wait", bad["id"]).returncode == 1  # ended, failed
    retried = tierq(live, "tasks", "retry", bad["id"], "--output", "json")
    assert retried.returncode == 0 and json.loads(retried.stdout)["status"] == "queued"
    slow = '{"type": "dummy", "payload": {"sleep_ms": 30000}}\n'
    tierq(live, "submit", "--file", "-", stdin=slow)
    (sleeper,) = json.loads(tierq(live, "tasks", "list", "--limit", "1", "--output", "json").stdout)
    assert tierq(live, "tasks", "wait", sleeper["id"], "--timeout", "0.3").returncode == 4
    cancelled = tierq(live, "tasks", "cancel", sleeper["id"], "--output", "json")
    assert cancelled.returncode == 0, cancelled.stderr
    missing = tierq(live, "tasks", "get", "01a25166-a9e1-7000-9e42-cc4fda64a9f8")
    assert missing.returncode == 1 and "404 not_found" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_events_stats_and_top(live: Live) -> None:
    tierq(live, "submit", "--file", "-", stdin='{"type": "noop"}\n' * 3)
    events = tierq(live, "events", "--limit", "4", "--output", "json", "--event", "submitted")
    assert events.returncode == 0, events.stderr
    rows = [json.loads(line) for line in events.stdout.splitlines()]
    assert len(rows) == 3 and {r["event"] for r in rows} == {"submitted"}
    # Followed from the last event seen: whatever is published before the stream connects
    # is still sent.
    after = rows[-1]["cursor"]
    command = ["events", "--follow", "--limit", "1", "--after", after, "--event", "submitted"]
    follow = subprocess.Popen(
        [sys.executable, "-m", "tierq", *command, "--output", "json"],
        env={**os.environ, "TIERQ_URL": live.url},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        tierq(live, "submit", "--file", "-", stdin='{"type": "noop", "name": "live"}\n')
        out, _ = follow.communicate(timeout=30)
    finally:
        follow.kill()
    assert follow.returncode == 0
    (line,) = out.splitlines()
    assert json.loads(line)["event"] == "submitted"
    assert int(json.loads(line)["cursor"]) > int(after)
    stats = tierq(live, "stats")
    assert stats.returncode == 0 and "succeeded" in stats.stdout and "default" in stats.stdout
    top = tierq(live, "top", "--iterations", "2", "--interval", "0.2")
    assert top.returncode == 0, top.stderr
    assert "queues" in top.stdout and "replicas" in top.stdout

"""``tierq schedules ...`` against a real server process (embedded), as a user runs it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.system.cluster import EmbeddedServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def cli(base: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "tierq", "schedules", "--url", base, *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        check=False,
    )


async def test_schedules_cli_round_trip(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "cli.db", tmp_path / "server.log")
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            await server.wait_ready(session)
        base = server.base
        definition = tmp_path / "s.json"
        definition.write_text(
            json.dumps(
                {
                    "name": "sample-task",
                    "cron_expression": "0 */15 * * * *",
                    "handler": "noop",
                    "parameters": {},
                    "max_retries": 3,
                }
            )
        )
        made = cli(base, "create", "--file", str(definition))
        assert made.returncode == 0, made.stderr
        sid = json.loads(made.stdout)["id"]
        again = cli(base, "create", "--file", "-", stdin=definition.read_bytes())
        assert again.returncode == 1 and b"409 conflict" in again.stderr
        bad = cli(base, "create", "--file", "-", stdin=b'{"name":"b","cron":"61 * * * *"}')
        assert bad.returncode == 1 and b"(at $.cron)" in bad.stderr
        listed = json.loads(cli(base, "list").stdout)
        assert [s["id"] for s in listed["items"]] == [sid]
        assert json.loads(cli(base, "pause", sid).stdout)["paused"] is True
        assert json.loads(cli(base, "resume", sid).stdout)["paused"] is False
        shown = json.loads(cli(base, "get", sid).stdout)
        assert len(shown["next_runs"]) == 5
        first = json.loads(cli(base, "trigger", sid, "--idempotency-key", "k").stdout)
        second = json.loads(cli(base, "trigger", sid, "--idempotency-key", "k").stdout)
        assert first["id"] == second["id"] and first["schedule_id"] == sid
        for _ in range(100):
            runs = json.loads(cli(base, "runs", sid).stdout)["items"]
            if runs and runs[0]["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
        assert runs[0]["trigger"] is True and runs[0]["status"] == "succeeded"
        assert cli(base, "delete", sid).returncode == 0
        missing = cli(base, "get", sid)
        assert missing.returncode == 1 and b"404" in missing.stderr
    finally:
        server.kill()

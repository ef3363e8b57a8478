"""``tierq keys`` and ``tierq audit`` on an embedded store, and ``tierq serve`` refusing to
expose a server without credentials, as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]


def run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("TIERQ_")}
    out["TIERQ_DATABASE_URL"] = "sqlite:///" + str(tmp_path / "tq.db")
    return out


def test_keys_lifecycle_on_the_store(env: dict[str, str]) -> None:
    made = run(env, "keys", "create", "--name", "ops", "--role", "admin", "--tenant", "acme")
    assert made.returncode == 0, made.stderr
    *info, secret = made.stdout.strip().splitlines()
    assert secret.startswith("tq_live_") and len(secret) == 47
    record = json.loads(info[-1])
    assert record["tenant"] == "acme" and record["role"] == "admin"
    listed = run(env, "keys", "list")
    assert secret not in listed.stdout and record["id"] in listed.stdout
    rotated = run(env, "keys", "rotate", record["id"], "--grace", "60")
    assert rotated.returncode == 0
    new_secret = rotated.stdout.strip().splitlines()[-1]
    assert new_secret.startswith("tq_live_") and new_secret != secret
    revoked = run(env, "keys", "revoke", record["id"])
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["revoked_at"]
    missing = run(env, "keys", "revoke", "no-such-key")
    assert missing.returncode == 1 and "no key" in missing.stderr
    bad = run(env, "keys", "create", "--name", "x", "--role", "root")
    assert bad.returncode == 2  # argparse refuses the role


def test_removed_api_keys_setting_says_what_replaced_it(env: dict[str, str]) -> None:
    result = run({**env, "TIERQ_API_KEYS": "k1"}, "migrate")
    assert result.returncode == 2
    assert "TIERQ_API_KEYS" in result.stderr and "tierq keys create" in result.stderr


def test_audit_verify_finds_a_tampered_row(env: dict[str, str], tmp_path: Path) -> None:
    asyncio.run(append_audit_rows(str(tmp_path / "tq.db"), 5))
    intact = run(env, "audit", "verify")
    assert intact.returncode == 0 and "5 rows" in intact.stdout, intact.stdout
    conn = sqlite3.connect(tmp_path / "tq.db")
    with conn:
        conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3")
    conn.close()
    broken = run(env, "audit", "verify")
    assert broken.returncode == 1 and "BROKEN at seq 3" in broken.stdout, broken.stdout


async def append_audit_rows(path: str, n: int) -> None:
    from tierq.model import AuditEntry
    from tierq.storage.factory import make_access_stores
    from tierq.storage.sqlite.store import SQLiteRecordStore

    store = SQLiteRecordStore(path)
    await store.open()
    try:
        _, audit = make_access_stores(store)
        await audit.append_many(
            [
                AuditEntry(
                    1.0e9 + i, "k1", "acme", "admin", "DELETE /x", "tasks", str(i), "r", "-", 200
                )
                for i in range(n)
            ]
        )
    finally:
        await store.close()


def test_serve_refuses_to_expose_a_server_without_credentials(env: dict[str, str]) -> None:
    result = run({**env, "TIERQ_PORT": "0"}, "serve", "--host", "0.0.0.0", timeout=60)
    assert result.returncode == 2
    assert "not a loopback address" in result.stderr and "--insecure-no-auth" in result.stderr

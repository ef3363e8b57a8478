"""Access control as a deployment runs it: keys made with ``tierq keys create`` on the shared
PostgreSQL, two ``tierq serve`` replicas on it and Redis behind nginx. One rate limit for the
whole deployment (a client sending 800/s for 5 s through nginx gets about 200/s + the burst,
not twice that), a key revoked on one replica refused by the other within 2 s, and one audit
chain written by both replicas that ``tierq audit verify`` finds intact."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.system.cluster import (
    POSTGRES_URL,
    REDIS_URL,
    Nginx,
    Replica,
    delete_prefix,
    drop_schema,
    unique_name,
)

pytestmark = [pytest.mark.slow, pytest.mark.distributed, pytest.mark.timeout(300)]

RATE, BURST, SEND_PER_S, SECONDS = 200, 50, 800, 5


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
async def deployment(tmp_path: Path) -> AsyncIterator[tuple[list[Replica], Nginx, dict[str, str]]]:
    schema, prefix = unique_name("schema"), unique_name("prefix")
    replicas = [
        Replica(f"access-{i}", POSTGRES_URL, schema, REDIS_URL, prefix, tmp_path) for i in range(2)
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERQ_")}
    env.update(TIERQ_DATABASE_URL=POSTGRES_URL, TIERQ_DATABASE_SCHEMA=schema)
    for replica in replicas:
        replica.env.update(
            TIERQ_RATE_SUBMIT_PER_S=str(RATE),
            TIERQ_RATE_SUBMIT_BURST=str(BURST),
            TIERQ_AUTH_CACHE_S="1",
        )
    nginx = Nginx(tmp_path, [r.port for r in replicas])
    try:
        yield replicas, nginx, env
    finally:
        nginx.kill()
        for replica in replicas:
            replica.kill()
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            await drop_schema(POSTGRES_URL, schema)
        with contextlib.suppress(OSError, ConnectionError):
            await delete_prefix(REDIS_URL, prefix)


async def test_one_limit_one_chain_and_revocation_across_replicas(
    deployment: tuple[list[Replica], Nginx, dict[str, str]],
) -> None:
    replicas, nginx, env = deployment
    made = cli(env, "keys", "create", "--name", "ops", "--role", "admin", "--tenant", "acme")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]  # the secret alone on the last line
    assert secret.startswith("tq_live_") and " " not in secret
    listed = cli(env, "keys", "list")
    assert listed.returncode == 0 and secret not in listed.stdout and '"acme"' in listed.stdout

    for replica in replicas:
        replica.start()
    nginx.start()
    headers = {"X-API-Key": secret}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=400)) as session:
        for replica in replicas:
            await replica.wait_ready(session)
        # Credentials are required now (a key exists), on every replica.
        async with session.get(nginx.base + "/api/v1/tasks") as resp:
            assert resp.status == 401

        statuses: Counter[int] = Counter()
        retry_after: set[str] = set()

        async def send() -> None:
            async with session.post(
                nginx.base + "/api/v1/tasks", json={"type": "noop"}, headers=headers
            ) as resp:
                statuses[resp.status] += 1
                if resp.status == 429:
                    retry_after.add(resp.headers.get("Retry-After", ""))
                await resp.read()

        started = time.monotonic()
        sent: list[asyncio.Task[None]] = []
        for i in range(SEND_PER_S * SECONDS):
            delay = started + i / SEND_PER_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent.append(asyncio.create_task(send()))
        await asyncio.gather(*sent)
        span = time.monotonic() - started
        accepted = statuses[201]
        print(f"\nsent {len(sent)} in {span:.2f}s: {dict(statuses)}")
        assert statuses[201] + statuses[429] == len(sent), statuses
        # One limit for both replicas: about RATE per second plus the burst (1,050 over 5 s),
        # never twice that. The upper bound allows for the requests still being decided
        # after the sending stopped (span), the lower for a slow start.
        assert accepted <= RATE * span + BURST + 20, (accepted, span)
        assert accepted >= RATE * SECONDS * 0.85, (accepted, span)
        assert accepted < 2 * RATE * SECONDS
        assert retry_after and all(v.isdigit() and int(v) >= 1 for v in retry_after)

        # A key revoked through one replica is refused by the other within 2 s.
        async with session.get(replicas[0].base + "/api/v1/keys", headers=headers) as resp:
            (key,) = (await resp.json())["items"]
        async with session.get(replicas[1].base + "/api/v1/keys", headers=headers) as resp:
            assert resp.status == 200  # cached there now
        async with session.delete(
            replicas[0].base + f"/api/v1/keys/{key['id']}", headers=headers
        ) as resp:
            assert resp.status == 200
        revoked_at = time.monotonic()
        while True:
            async with session.get(replicas[1].base + "/api/v1/tasks", headers=headers) as resp:
                if resp.status == 401:
                    break
                assert resp.status in (200, 429), resp.status
            assert time.monotonic() - revoked_at < 2.0, "still accepted 2 s after revocation"
            await asyncio.sleep(0.05)

    for replica in replicas:
        replica.kill()
    # Both replicas appended to one chain (the submissions, the refusals, the revocation).
    verified = cli(env, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout
    rows = int(verified.stdout.split(":")[1].split()[0])
    assert rows >= accepted + 1

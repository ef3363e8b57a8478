"""schemathesis against live servers, embedded and distributed: every operation of the
OpenAPI document, fuzzed and followed through its links (stateful). No answer may be a 5xx,
every answer must fit the document (status, content type, body), and every error has the
error shape (each operation's ``default`` answer). It authenticates with a JWT, which the
run cannot revoke or rotate (an API key it could: it has the admin role)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import jwt
import pytest

from tests.system.cluster import (
    POSTGRES_URL,
    REDIS_URL,
    EmbeddedServer,
    Replica,
    delete_prefix,
    drop_schema,
    unique_name,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SECRET = "schema-test-secret-" * 3
JWT_ENV = {
    "TIERQ_JWT_KEY": SECRET,
    "TIERQ_JWT_ALGORITHMS": "HS256",
    "TIERQ_JWT_ISSUER": "tierq-tests",
    "TIERQ_JWT_AUDIENCE": "tierq",
    "TIERQ_AUTH_FAILURE_LIMIT": "0",  # the run sends wrong credentials on purpose
    "TIERQ_LOG_LEVEL": "WARNING",
}
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    )
)


def token() -> str:
    now = int(time.time())
    claims = {
        "iss": "tierq-tests",
        "aud": "tierq",
        "sub": "schemathesis",
        "role": "admin",
        "tenant": "default",
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


def run_schemathesis(base: str, examples: int) -> None:
    # The CLI beside this interpreter (installed with the test extra).
    cli = str(Path(sys.executable).with_name("schemathesis"))
    done = subprocess.run(
        [
            cli,
            "run",
            f"{base}/api/v1/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(examples),
            # One worker: hypothesis 6.170 crashes now and then describing a strategy while
            # another thread parses source ("AST constructor recursion depth mismatch").
            "--workers",
            "1",
            "--seed",
            "1",
            # The event stream answers JSON pages when asked; a stream would never end.
            "-H",
            "Accept: application/json",
            "-H",
            f"Authorization: Bearer {token()}",
        ],
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"},
    )
    summary = done.stdout[-6000:]
    assert done.returncode == 0, summary + done.stderr[-2000:]
    assert "passed" in summary and "failed" not in summary.lower().split("summary")[-1], summary


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[EmbeddedServer]:
    server = EmbeddedServer(tmp_path / "api.db", tmp_path / "api.log", env=JWT_ENV)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_schema_holds_on_an_embedded_server(embedded: EmbeddedServer) -> None:
    async with aiohttp.ClientSession() as session:
        await embedded.wait_ready(session)
    run_schemathesis(embedded.base, examples=40)


@pytest.fixture
async def replica(tmp_path: Path) -> AsyncIterator[Replica]:
    schema, prefix = unique_name("schema"), unique_name("prefix")
    server = Replica("schema-0", POSTGRES_URL, schema, REDIS_URL, prefix, tmp_path)
    server.env.update(JWT_ENV)
    server.start()
    try:
        yield server
    finally:
        server.kill()
        await drop_schema(POSTGRES_URL, schema)
        await delete_prefix(REDIS_URL, prefix)


@pytest.mark.distributed
async def test_schema_holds_on_a_distributed_replica(replica: Replica) -> None:
    async with aiohttp.ClientSession() as session:
        await replica.wait_ready(session)
    run_schemathesis(replica.base, examples=25)

"""Live servers for the client's tests: ``tierq serve`` processes, embedded (SQLite) and
distributed (PostgreSQL and Redis, under a schema and a prefix of their own)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
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


@dataclass
class Live:
    mode: str
    server: EmbeddedServer | Replica

    @property
    def url(self) -> str:
        return self.server.base

    async def restart(self) -> None:
        """Kill (SIGKILL) and start again on the same port."""
        self.server.kill()
        self.server.start()
        async with aiohttp.ClientSession() as session:
            await self.server.wait_ready(session)


@pytest.fixture(params=["embedded", "distributed"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Live]:
    env = {"TIERQ_WORKERS": "8", "TIERQ_LOG_LEVEL": "WARNING"}
    if request.param == "embedded":
        server: EmbeddedServer | Replica = EmbeddedServer(
            tmp_path / "client.db", tmp_path / "server.log", env=env
        )
        schema = prefix = ""
    else:
        schema, prefix = unique_name("schema"), unique_name("prefix")
        server = Replica("client-0", POSTGRES_URL, schema, REDIS_URL, prefix, tmp_path)
        server.env.update(env)
    server.start()
    try:
        async with aiohttp.ClientSession() as session:
            await server.wait_ready(session)
        yield Live(request.param, server)
    finally:
        server.kill()
        if schema:
            await drop_schema(POSTGRES_URL, schema)
            await delete_prefix(REDIS_URL, prefix)

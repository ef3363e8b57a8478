"""The ``record_store`` fixture: every conformance test runs once per record-store backend.

sqlite: a fresh database file in ``tmp_path``. postgres: a fresh schema per test in the
database at ``TIERQ_TEST_POSTGRES_URL``, dropped afterwards; skipped only while the backend
module does not exist yet.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tierq.storage.base import RecordStore

POSTGRES_URL = os.environ.get(
    "TIERQ_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


async def _sqlite_store(tmp_path: Path) -> AsyncIterator[RecordStore]:
    from tierq.storage.sqlite.store import SQLiteRecordStore

    store = SQLiteRecordStore(str(tmp_path / "tierq.db"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def _postgres_store() -> AsyncIterator[RecordStore]:
    try:
        from tierq.storage.postgres.store import PostgresRecordStore
    except ModuleNotFoundError as exc:
        if exc.name != "tierq.storage.postgres.store":
            raise
        pytest.skip("postgres backend not present")
    import asyncpg

    schema = f"tierq_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        store = PostgresRecordStore(POSTGRES_URL, schema=schema)
        await store.open()
        try:
            yield store
        finally:
            await store.close()
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def record_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RecordStore]:
    gen = _sqlite_store(tmp_path) if request.param == "sqlite" else _postgres_store()
    store = await gen.__anext__()
    try:
        yield store
    finally:
        await gen.aclose()

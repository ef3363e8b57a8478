"""The ``record_store`` fixture: every conformance test runs once per record-store backend.

sqlite: a fresh database file in ``tmp_path``. postgres: a fresh schema per test in the
database at ``TIERQ_TEST_POSTGRES_URL``, dropped afterwards (``tests.helpers``). Neither is
ever skipped: a backend that cannot run its suite fails it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import postgres_store_in_fresh_schema
from tierq.storage.base import RecordStore


async def _sqlite_store(tmp_path: Path) -> AsyncIterator[RecordStore]:
    from tierq.storage.sqlite.store import SQLiteRecordStore

    store = SQLiteRecordStore(str(tmp_path / "tierq.db"))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def record_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[RecordStore]:
    gen = _sqlite_store(tmp_path) if request.param == "sqlite" else postgres_store_in_fresh_schema()
    store = await gen.__anext__()
    try:
        yield store
    finally:
        await gen.aclose()

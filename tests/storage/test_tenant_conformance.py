"""Tenants in the record stores (SQLite file, PostgreSQL schema), one suite for both: another
tenant's task is not found by id, listed or counted, in the query itself; idempotency keys are
unique per tenant; the default tenant's counts come from the maintained totals."""

from __future__ import annotations

from tierq.model import TaskFilter, TaskState
from tierq.storage.base import RecordStore

from .test_record_conformance import NOW, insert, make_task


async def test_get_and_list_are_scoped_by_tenant(record_store: RecordStore) -> None:
    acme = await insert(record_store, make_task(tenant="acme"), make_task(tenant="acme"))
    globex = await insert(record_store, make_task(tenant="globex"))
    default = await insert(record_store, make_task())
    ids = [t.id for t in (*acme, *globex, *default)]
    assert {t.id for t in await record_store.task_get_many(ids, "acme")} == {t.id for t in acme}
    assert await record_store.task_get(globex[0].id, "acme") is None
    got = await record_store.task_get(globex[0].id, "globex")
    assert got is not None and got.tenant == "globex"
    assert len(await record_store.task_get_many(ids)) == 4  # None: every tenant
    for tenant, expected in (("acme", acme), ("globex", globex), ("default", default)):
        page = await record_store.task_list(TaskFilter(tenant=tenant, size=10))
        assert {t.id for t in page.items} == {t.id for t in expected}, tenant
        assert all(t.tenant == tenant for t in page.items)
    page = await record_store.task_list(
        TaskFilter(tenant="acme", states=(TaskState.QUEUED,), size=1)
    )
    assert len(page.items) == 1 and page.has_more
    assert len((await record_store.task_list(TaskFilter(size=10))).items) == 4


async def test_counts_per_tenant(record_store: RecordStore) -> None:
    await insert(
        record_store,
        make_task(tenant="acme"),
        make_task(tenant="acme", state=TaskState.SCHEDULED, run_at=NOW + 60),
        make_task(tenant="globex"),
        make_task(),
        make_task(),
        make_task(state=TaskState.PENDING),
    )
    acme = await record_store.task_counts("acme")
    assert acme[TaskState.QUEUED] == 1 and acme[TaskState.SCHEDULED] == 1
    assert sum(acme.values()) == 2
    default = await record_store.task_counts("default")
    assert default[TaskState.QUEUED] == 2 and default[TaskState.PENDING] == 1
    assert sum(default.values()) == 3
    assert sum((await record_store.task_counts("nobody")).values()) == 0
    everyone = await record_store.task_counts()
    assert everyone[TaskState.QUEUED] == 4 and sum(everyone.values()) == 6


async def test_idempotency_keys_are_unique_per_tenant(record_store: RecordStore) -> None:
    first_acme = make_task(tenant="acme", idempotency_key="order-1")
    first_globex = make_task(tenant="globex", idempotency_key="order-1")
    again_acme = make_task(tenant="acme", idempotency_key="order-1")
    stored = await record_store.task_insert_many([first_acme, first_globex, again_acme])
    assert stored == [first_acme.id, first_globex.id, first_acme.id]
    later = make_task(tenant="globex", idempotency_key="order-1")
    assert await record_store.task_insert_many([later]) == [first_globex.id]
    counts = await record_store.task_counts()
    assert counts[TaskState.QUEUED] == 2

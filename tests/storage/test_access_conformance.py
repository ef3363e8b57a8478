"""One suite for both access stores (API keys, audit log) on both record-store backends
(SQLite file, PostgreSQL schema): tenant scoping in the queries, rotation, batched last use,
and the audit chain (appends in batches, filters, verification that finds an edited row)."""

from __future__ import annotations

import asyncio
import hashlib

import orjson

from tierq.ids import new_id
from tierq.model import ApiKey, AuditEntry, AuditFilter
from tierq.storage.audit import GENESIS
from tierq.storage.base import RecordStore
from tierq.storage.factory import make_access_stores

NOW = 1_700_000_000.0


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def key(**changes: object) -> ApiKey:
    values: dict[str, object] = dict(
        id=new_id(NOW),
        name="ops",
        role="admin",
        tenant="acme",
        secret_hash=digest(new_id(NOW)),
        prefix="tq_live_abcd",
        created_at=NOW,
    )
    values.update(changes)
    return ApiKey(**values)  # type: ignore[arg-type]


def entry(n: int, **changes: object) -> AuditEntry:
    values: dict[str, object] = dict(
        at=NOW + n,
        actor=f"key-{n % 3}",
        tenant="acme" if n % 2 else "globex",
        role="operator",
        action="POST /api/v1/tasks/{task_id}/cancel",
        resource_type="task",
        resource_id=f"id-{n}",
        request_id=f"req-{n}",
        source="127.0.0.1",
        status=200,
        changes=orjson.dumps({"n": n}) if n % 4 == 0 else None,
    )
    values.update(changes)
    return AuditEntry(**values)  # type: ignore[arg-type]


async def test_keys_round_trip_and_tenant_scope(record_store: RecordStore) -> None:
    keys, _ = make_access_stores(record_store)
    acme = key(rate_limits=b'{"submit":{"per_second":5,"burst":2}}')
    globex = key(tenant="globex", created_at=NOW + 1, expires_at=NOW + 100)
    await keys.create(acme)
    await keys.create(globex)
    assert await keys.find(acme.secret_hash) == acme
    assert await keys.find(digest("nothing")) is None
    assert await keys.get(acme.id, "acme") == acme
    assert await keys.get(acme.id, "globex") is None  # another tenant's key: not found
    assert await keys.get(acme.id, None) == acme  # a platform admin sees every tenant
    assert await keys.list_keys("globex") == [globex]
    assert await keys.list_keys(None) == [acme, globex]
    assert await keys.count_live(NOW) == 2
    assert await keys.count_live(NOW + 100) == 1  # globex expired


async def test_revoke_is_scoped_and_idempotent(record_store: RecordStore) -> None:
    keys, _ = make_access_stores(record_store)
    k = key()
    await keys.create(k)
    assert await keys.revoke(k.id, "globex", NOW + 1) is None
    revoked = await keys.revoke(k.id, "acme", NOW + 1)
    assert revoked is not None and revoked.revoked_at == NOW + 1
    again = await keys.revoke(k.id, None, NOW + 2)
    assert again is not None and again.revoked_at == NOW + 1
    assert not again.usable(NOW + 3)
    assert await keys.count_live(NOW + 3) == 0


async def test_rotation_keeps_the_previous_secret_for_its_grace(record_store: RecordStore) -> None:
    keys, _ = make_access_stores(record_store)
    k = key()
    await keys.create(k)
    new_hash = digest("new secret")
    rotated = await keys.rotate(k.id, "acme", new_hash, "tq_live_wxyz", NOW + 60)
    assert rotated is not None
    assert (rotated.secret_hash, rotated.prefix) == (new_hash, "tq_live_wxyz")
    assert (rotated.previous_hash, rotated.previous_until) == (k.secret_hash, NOW + 60)
    old = await keys.find(k.secret_hash)
    assert old is not None and old.id == k.id
    assert old.usable(NOW + 59, previous=True) and not old.usable(NOW + 60, previous=True)
    assert await keys.rotate(k.id, "globex", digest("x"), "p", NOW) is None
    await keys.revoke(k.id, None, NOW + 1)
    assert await keys.rotate(k.id, None, digest("y"), "p", NOW) is None  # revoked: not rotated


async def test_last_use_in_one_batch_never_moves_back(record_store: RecordStore) -> None:
    keys, _ = make_access_stores(record_store)
    a, b = key(), key()
    await keys.create(a)
    await keys.create(b)
    await keys.touch_many([(a.id, NOW + 10), (b.id, NOW + 5)])
    await keys.touch_many([(a.id, NOW + 7)])  # older than what is stored: ignored
    await keys.touch_many([])
    stored = {k.id: k.last_used_at for k in await keys.list_keys(None)}
    assert stored == {a.id: NOW + 10, b.id: NOW + 5}


async def test_audit_appends_chain_and_filters(record_store: RecordStore) -> None:
    _, audit = make_access_stores(record_store)
    await audit.append_many([entry(n) for n in range(1, 6)])
    await audit.append_many([entry(n) for n in range(6, 9)])
    await audit.append_many([])
    rows, more = await audit.page(AuditFilter(size=50))
    assert [r.seq for r in rows] == list(range(8, 0, -1)) and not more
    assert rows[-1].prev_hash == GENESIS
    assert all(rows[i].prev_hash == rows[i + 1].hash for i in range(len(rows) - 1))
    assert rows[-4].entry == entry(4)  # changes come back byte for byte
    assert await audit.verify() == (8, None)

    acme, _ = await audit.page(AuditFilter(tenant="acme"))
    assert {r.entry.tenant for r in acme} == {"acme"} and len(acme) == 4
    by_actor, _ = await audit.page(AuditFilter(actor="key-1"))
    assert [r.seq for r in by_actor] == [7, 4, 1]
    by_resource, _ = await audit.page(AuditFilter(resource="task:id-3"))
    assert [r.seq for r in by_resource] == [3]
    window, _ = await audit.page(AuditFilter(since=NOW + 2, until=NOW + 4))
    assert [r.seq for r in window] == [3, 2]
    first, more = await audit.page(AuditFilter(size=3))
    assert [r.seq for r in first] == [8, 7, 6] and more
    rest, more = await audit.page(AuditFilter(size=10, before_seq=6))
    assert [r.seq for r in rest] == [5, 4, 3, 2, 1] and not more


async def test_concurrent_appends_form_one_chain(record_store: RecordStore) -> None:
    _, audit = make_access_stores(record_store)
    await asyncio.gather(*(audit.append_many([entry(n), entry(n + 100)]) for n in range(10)))
    assert await audit.verify() == (20, None)


async def test_verify_finds_an_edited_row_and_trim_keeps_an_anchor(
    record_store: RecordStore,
) -> None:
    _, audit = make_access_stores(record_store)
    await audit.append_many([entry(n) for n in range(1, 11)])
    assert await audit.trim(NOW + 4) == 3  # rows 1-3
    assert await audit.verify() == (7, None)  # the oldest kept row anchors the chain
    await edit_audit_row(record_store, seq=6)
    checked, broken = await audit.verify()
    assert (checked, broken) == (2, 6)


async def edit_audit_row(record_store: RecordStore, seq: int) -> None:
    """Tamper with one stored row behind the store's back."""
    from tierq.storage.postgres.store import PostgresRecordStore
    from tierq.storage.sqlite.store import SQLiteRecordStore

    if isinstance(record_store, SQLiteRecordStore):
        await record_store._write(
            lambda c: c.execute("UPDATE audit_log SET status = 500 WHERE seq = ?", (seq,))
        )
    else:
        assert isinstance(record_store, PostgresRecordStore)

        async def run(conn: object) -> None:
            await conn.execute("UPDATE audit_log SET status = 500 WHERE seq = $1", seq)  # type: ignore[attr-defined]

        await record_store._run(run)

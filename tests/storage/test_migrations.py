"""How every SQL record store finds its numbered migrations and which are still to apply."""

from __future__ import annotations

from tierq.storage.migrations import Migration, discover, pending


def test_each_backend_finds_its_migrations_in_version_order() -> None:
    for package in ("tierq.storage.sqlite", "tierq.storage.postgres"):
        found = discover(package)
        versions = [m.version for m in found]
        assert versions == sorted(set(versions)) and versions[0] == 1, (package, versions)
        assert all(m.name.startswith(f"{m.version:03d}_") and m.sql.strip() for m in found)


def test_pending_keeps_order_and_skips_what_was_applied() -> None:
    available = [Migration(v, f"{v:03d}_m.sql", "SELECT 1") for v in (1, 2, 3)]
    assert [m.version for m in pending(available, [])] == [1, 2, 3]
    assert [m.version for m in pending(available, {2})] == [1, 3]
    assert pending(available, [1, 2, 3]) == []

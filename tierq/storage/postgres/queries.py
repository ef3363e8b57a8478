"""SQL text of the PostgreSQL record store, read from ``sql/*.sql`` and
``migrations/NNN_*.sql`` once at import. A missing file fails the import, not a request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_PKG = resources.files(__package__ or "tierq.storage.postgres")
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def _sql(name: str) -> str:
    return (_PKG / "sql" / f"{name}.sql").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def _migrations() -> tuple[Migration, ...]:
    found = []
    for entry in (_PKG / "migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            text = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match.group(1)), entry.name, text))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {versions}")
    return tuple(found)


MIGRATIONS = _migrations()

MIGRATE_LOCK = _sql("migrate_lock")
SCHEMA_CREATE = _sql("schema_create")
MIGRATIONS_TABLE = _sql("migrations_table")
MIGRATIONS_APPLIED = _sql("migrations_applied")
MIGRATION_RECORD = _sql("migration_record")
PING = _sql("ping")

TASK_INSERT = _sql("task_insert")
TASK_KEY_HOLDERS = _sql("task_key_holders")
TASK_TRANSITION = _sql("task_transition")
TASK_CANCEL = _sql("task_cancel")
TASK_RETRY = _sql("task_retry")
TASK_CLAIM = _sql("task_claim")
TASK_RELEASE_ALL = _sql("task_release_all")
TASK_RELEASE_IDS = _sql("task_release_ids")
TASK_RECOVER = _sql("task_recover")
TASK_RELEASE_DEPENDENTS = _sql("task_release_dependents")
TASK_GET_MANY = _sql("task_get_many")
TASK_LIST_SELECT = _sql("task_list_select")
TASK_COUNTS = _sql("task_counts")
EXECUTION_LIST = _sql("execution_list")

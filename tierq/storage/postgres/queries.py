"""SQL text of the PostgreSQL record store, read from ``sql/*.sql`` and
``migrations/NNN_*.sql`` once at import. A missing file fails the import, not a request."""

from __future__ import annotations

from importlib import resources

from tierq.storage.migrations import discover

_PKG = resources.files(__package__ or "tierq.storage.postgres")


def _sql(name: str) -> str:
    return (_PKG / "sql" / f"{name}.sql").read_text(encoding="utf-8")


MIGRATIONS = discover(__package__ or "tierq.storage.postgres")

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

"""SQL text of the PostgreSQL record store, read from ``sql/*.sql`` and
``migrations/NNN_*.sql`` once at import. A missing file fails the import, not a request."""

from __future__ import annotations

from importlib import resources

from tierq.storage.migrations import discover

_PKG = resources.files(__package__ or "tierq.storage.postgres")


def sql(name: str) -> str:
    """The text of ``sql/<name>.sql`` (every module of this backend reads its SQL here)."""
    return (_PKG / "sql" / f"{name}.sql").read_text(encoding="utf-8")


MIGRATIONS = discover(__package__ or "tierq.storage.postgres")

MIGRATE_LOCK = sql("migrate_lock")
SCHEMA_CREATE = sql("schema_create")
MIGRATIONS_TABLE = sql("migrations_table")
MIGRATIONS_APPLIED = sql("migrations_applied")
MIGRATION_RECORD = sql("migration_record")
PING = sql("ping")

TASK_INSERT = sql("task_insert")
TASK_KEY_HOLDERS = sql("task_key_holders")
TASK_TRANSITION = sql("task_transition")
TASK_CANCEL = sql("task_cancel")
TASK_RETRY = sql("task_retry")
TASK_CLAIM = sql("task_claim")
TASK_RELEASE_ALL = sql("task_release_all")
TASK_RELEASE_IDS = sql("task_release_ids")
TASK_RECOVER = sql("task_recover")
TASK_RELEASE_DEPENDENTS = sql("task_release_dependents")
TASK_GET_MANY = sql("task_get_many")
TASK_LIST_SELECT = sql("task_list_select")
TASK_COUNTS = sql("task_counts")
TASK_PURGE = sql("task_purge")
TASK_COUNTS_TENANT = sql("task_counts_tenant")
TASK_COUNTS_DEFAULT_TENANT = sql("task_counts_default_tenant")
EXECUTION_LIST = sql("execution_list")

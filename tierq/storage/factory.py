"""Pick the backends named by the settings. Optional backends are imported only when used, and
a missing driver is reported with the command that installs it."""

from __future__ import annotations

from tierq.config import ConfigError, Settings
from tierq.storage.audit import AuditStore
from tierq.storage.base import Dispatch, RecordStore
from tierq.storage.breakers import BreakerPolicy, BreakerStore, InProcessBreakerStore
from tierq.storage.eventlog import EventLog
from tierq.storage.inprocess import InProcessDispatch
from tierq.storage.keys import KeyStore
from tierq.storage.leader import AlwaysLeader, Leader
from tierq.storage.notifications import NotificationStore
from tierq.storage.queues import QueueStore
from tierq.storage.ratelimit import InProcessRateLimiter, RateLimiter
from tierq.storage.rollups import RollupStore
from tierq.storage.schedules import ScheduleStore
from tierq.storage.sinks import EventSink

_HINT = "install the distributed extra: pip install 'tierq[distributed]'"


def sqlite_path(url: str) -> str:
    """sqlite:///relative.db -> relative.db; sqlite:////abs/path.db -> /abs/path.db."""
    path = url[len("sqlite://") :]
    if path.startswith("/"):
        path = path[1:]
    if not path:
        raise ConfigError("TIERQ_DATABASE_URL: sqlite URL needs a file path")
    return path


def make_record_store(settings: Settings) -> RecordStore:
    url = settings.database_url
    if url.startswith("sqlite://"):
        from tierq.storage.sqlite.store import SQLiteRecordStore

        return SQLiteRecordStore(sqlite_path(url), synchronous=settings.sqlite_synchronous)
    try:
        from tierq.storage.postgres.store import PostgresRecordStore
    except ModuleNotFoundError as exc:
        raise ConfigError(f"TIERQ_DATABASE_URL: PostgreSQL needs asyncpg ({_HINT})") from exc
    return PostgresRecordStore(url, schema=settings.database_schema)


def make_dispatch(settings: Settings, store: RecordStore) -> Dispatch:
    if not settings.redis_url:
        return InProcessDispatch(store)
    if not store.capabilities.shared:
        raise ConfigError(
            "TIERQ_REDIS_URL: distributed mode needs a shared record store "
            "(TIERQ_DATABASE_URL=postgresql://...), not the embedded SQLite file"
        )
    try:
        from tierq.storage.redis.dispatch import RedisDispatch
    except ModuleNotFoundError as exc:
        raise ConfigError(f"TIERQ_REDIS_URL: Redis needs redis-py ({_HINT})") from exc
    return RedisDispatch(
        settings.redis_url, prefix=settings.redis_prefix, heartbeat_ttl=settings.heartbeat_ttl_s
    )


def make_event_log(settings: Settings) -> EventLog | None:
    """The event log: the Redis Stream when distributed, else beside the record store (a
    SQLite file, or a PostgreSQL table); ``None`` when ``event_log`` is off."""
    if not settings.event_log:
        return None
    if settings.redis_url:
        from tierq.storage.redis.events import RedisEventLog

        return RedisEventLog(settings.redis_url, settings.redis_prefix)
    url = settings.database_url
    if url.startswith("sqlite://"):
        from tierq.storage.sqlite.events import SQLiteEventLog, events_path

        return SQLiteEventLog(events_path(sqlite_path(url)))
    from tierq.storage.postgres.events import PostgresEventLog

    return PostgresEventLog(url, schema=settings.database_schema)


def make_notification_store(store: RecordStore) -> NotificationStore:
    """Notification records live beside the tasks, on the record store's connections
    (``store`` is the backend itself, not an instrumented wrapper)."""
    from tierq.storage.sqlite.store import SQLiteRecordStore

    if isinstance(store, SQLiteRecordStore):
        from tierq.storage.sqlite.notifications import SQLiteNotificationStore

        return SQLiteNotificationStore(store)
    from tierq.storage.postgres.notifications import PostgresNotificationStore
    from tierq.storage.postgres.store import PostgresRecordStore

    if not isinstance(store, PostgresRecordStore):
        raise TypeError(f"no notification store for {type(store).__name__}")
    return PostgresNotificationStore(store)


def make_schedule_store(store: RecordStore) -> ScheduleStore:
    """Schedules live beside the tasks, on the record store's connections, so a fire commits
    its tasks and the schedules' state together (``store`` is the backend itself)."""
    from tierq.storage.sqlite.store import SQLiteRecordStore

    if isinstance(store, SQLiteRecordStore):
        from tierq.storage.sqlite.schedules import SQLiteScheduleStore

        return SQLiteScheduleStore(store)
    from tierq.storage.postgres.schedules import PostgresScheduleStore
    from tierq.storage.postgres.store import PostgresRecordStore

    if not isinstance(store, PostgresRecordStore):
        raise TypeError(f"no schedule store for {type(store).__name__}")
    return PostgresScheduleStore(store)


def make_queue_store(store: RecordStore) -> QueueStore:
    """Queue controls and bulk-operation answers live beside the tasks (``store`` is the
    backend itself)."""
    from tierq.storage.sqlite.store import SQLiteRecordStore

    if isinstance(store, SQLiteRecordStore):
        from tierq.storage.sqlite.queues import SQLiteQueueStore

        return SQLiteQueueStore(store)
    from tierq.storage.postgres.queues import PostgresQueueStore
    from tierq.storage.postgres.store import PostgresRecordStore

    if not isinstance(store, PostgresRecordStore):
        raise TypeError(f"no queue store for {type(store).__name__}")
    return PostgresQueueStore(store)


def make_breaker_store(settings: Settings, dispatch: Dispatch) -> BreakerStore:
    """Distributed: breakers in Redis, shared by every replica; embedded: in this process."""
    policy = BreakerPolicy.of(settings)
    if dispatch.capabilities.shared:
        from tierq.storage.redis.breakers import RedisBreakerStore
        from tierq.storage.redis.dispatch import RedisDispatch

        if isinstance(dispatch, RedisDispatch):
            return RedisBreakerStore(dispatch, policy)
    return InProcessBreakerStore(policy)


def make_access_stores(store: RecordStore) -> tuple[KeyStore, AuditStore]:
    """API keys and the audit log live beside the tasks, on the record store's connections
    (``store`` is the backend itself), so ``tierq keys create`` needs nothing else."""
    from tierq.storage.sqlite.store import SQLiteRecordStore

    if isinstance(store, SQLiteRecordStore):
        from tierq.storage.sqlite.access import SQLiteAuditStore, SQLiteKeyStore

        return SQLiteKeyStore(store), SQLiteAuditStore(store)
    from tierq.storage.postgres.access import PostgresAuditStore, PostgresKeyStore
    from tierq.storage.postgres.store import PostgresRecordStore

    if not isinstance(store, PostgresRecordStore):
        raise TypeError(f"no access stores for {type(store).__name__}")
    return PostgresKeyStore(store), PostgresAuditStore(store)


def make_rate_limiter(settings: Settings) -> RateLimiter:
    """Distributed: buckets in Redis, shared by every replica; embedded: in this process."""
    if not settings.redis_url:
        return InProcessRateLimiter()
    from tierq.storage.redis.ratelimit import RedisRateLimiter

    return RedisRateLimiter(settings.redis_url, settings.redis_prefix)


def make_leader(settings: Settings, dispatch: Dispatch) -> Leader:
    """Who fires schedules: with Redis, whoever holds the lease in it; PostgreSQL without
    Redis, whoever holds the advisory lock; embedded, the one process (that owns the file)."""
    if dispatch.capabilities.shared:
        from tierq.storage.redis.dispatch import RedisDispatch
        from tierq.storage.redis.leader import RedisLeader

        if isinstance(dispatch, RedisDispatch):
            return RedisLeader(dispatch, ttl_s=settings.schedule_leader_ttl_s)
    if settings.database_url.startswith(("postgresql://", "postgres://")):
        from tierq.storage.postgres.leader import PostgresLeader

        return PostgresLeader(
            settings.database_url,
            schema=settings.database_schema,
            ttl_s=settings.schedule_leader_ttl_s,
        )
    return AlwaysLeader()


def make_event_sink(settings: Settings) -> EventSink | None:
    """The external broker events are also published to, if one is configured."""
    if not settings.amqp_url:
        return None
    try:
        from tierq.storage.amqp.sink import AmqpSink
    except ModuleNotFoundError as exc:
        raise ConfigError(f"TIERQ_AMQP_URL: {exc}") from exc
    return AmqpSink(settings.amqp_url, settings.amqp_exchange)


def make_rollup_store(store: RecordStore) -> RollupStore:
    """Per-minute task rollups live beside the tasks (``store`` is the backend itself)."""
    from tierq.storage.sqlite.store import SQLiteRecordStore

    if isinstance(store, SQLiteRecordStore):
        from tierq.storage.sqlite.rollups import SQLiteRollupStore

        return SQLiteRollupStore(store)
    from tierq.storage.postgres.rollups import PostgresRollupStore
    from tierq.storage.postgres.store import PostgresRecordStore

    if not isinstance(store, PostgresRecordStore):
        raise TypeError(f"no rollup store for {type(store).__name__}")
    return PostgresRollupStore(store)

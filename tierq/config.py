"""Settings: one frozen, typed object built from defaults, ``TIERQ_*`` variables and flags.

Every field documents its meaning, special values and default. Unknown ``TIERQ_*`` variables
and malformed values stop start-up with a one-line error naming the setting: a setting that is
silently ignored is worse than none.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

ENV_PREFIX = "TIERQ_"
TEST_PREFIX = "TIERQ_TEST_"


class ConfigError(ValueError):
    """A setting is unknown or malformed. The message names it."""


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = field(default="127.0.0.1", metadata=_doc("Address the HTTP API binds to."))
    port: int = field(default=8080, metadata=_doc("HTTP port. 0 picks a free port."))
    database_url: str = field(
        default="sqlite:///tierq.db",
        metadata=_doc(
            "Record tier. sqlite:///relative.db, sqlite:////absolute.db, or "
            "postgresql://user@host:port/db for distributed mode."
        ),
    )
    redis_url: str = field(
        default="",
        metadata=_doc("Dispatch tier. Empty = embedded (in-process). redis://host:port/db."),
    )
    redis_prefix: str = field(
        default="tierq",
        metadata=_doc("Prefix of every Redis key, so several deployments can share one Redis."),
    )
    database_schema: str = field(
        default="public",
        metadata=_doc("PostgreSQL schema holding tierq's tables (created if missing)."),
    )
    workers: int = field(default=64, metadata=_doc("Concurrent asyncio workers in this process."))
    memory_limit: int = field(
        default=50_000,
        metadata=_doc(
            "Most tasks this process keeps in its memory tier (ready + delayed + running). "
            "The rest wait in the record/dispatch tier and are paged in as the heap drains."
        ),
    )
    handlers: tuple[str, ...] = field(
        default=(),
        metadata=_doc("Comma-separated import paths of modules that register user handlers."),
    )
    retry_base_ms: int = field(
        default=1000, metadata=_doc("First retry delay; doubles per attempt (with jitter).")
    )
    retry_max_ms: int = field(default=300_000, metadata=_doc("Longest retry delay."))
    default_max_retries: int = field(
        default=3, metadata=_doc("max_retries of a task that does not say.")
    )
    default_timeout_s: float = field(
        default=300.0, metadata=_doc("timeout_seconds of a task that does not say.")
    )
    max_batch: int = field(default=10_000, metadata=_doc("Most tasks in one batch submission."))
    max_body_bytes: int = field(
        default=32 * 1024 * 1024, metadata=_doc("Largest request body accepted (413 above).")
    )
    commit_window_ms: float = field(
        default=0.0,
        metadata=_doc(
            "Group commit: how long a submission may wait for others to share its transaction. "
            "0 commits as soon as the writer is free."
        ),
    )
    commit_small_slots: int = field(
        default=2,
        metadata=_doc(
            "Group commit: transactions of small submissions (at most 16 tasks, a single POST) "
            "in flight at once, apart from those of large batches. 2 lowers single-submit "
            "latency where the CPU has room; 1 costs the least CPU per submission where it has "
            "none (BENCHMARKS.md)."
        ),
    )
    flush_interval_ms: float = field(
        default=20.0,
        metadata=_doc("Longest time a state change waits before its batch is written."),
    )
    sqlite_synchronous: str = field(
        default="FULL",
        metadata=_doc(
            "SQLite synchronous pragma: FULL survives power loss, NORMAL survives a process "
            "crash only (faster)."
        ),
    )
    shell_allow: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "Executables the shell task type may run (absolute paths or names on PATH). "
            "Empty = the shell type is disabled."
        ),
    )
    http_allow_private: tuple[str, ...] = field(
        default=(),
        metadata=_doc(
            "CIDRs or host names the http task type may reach although they are loopback, "
            "private or link-local (refused by default). '*' allows every address."
        ),
    )
    heartbeat_s: float = field(default=2.0, metadata=_doc("Replica heartbeat interval."))
    heartbeat_ttl_s: float = field(
        default=6.0, metadata=_doc("A replica silent this long is dead; its leases return.")
    )
    shutdown_grace_s: float = field(
        default=30.0,
        metadata=_doc("On SIGTERM, how long running tasks may take to finish before hand-back."),
    )
    node_id: str = field(
        default="", metadata=_doc("Replica name in leases and /health/workers. Empty = generated.")
    )
    log_level: str = field(default="INFO", metadata=_doc("Python logging level."))
    api_keys: tuple[str, ...] = field(
        default=(),
        repr=False,  # secrets never reach a log line through the settings' repr
        metadata=_doc(
            "API keys accepted in the X-API-Key header or as a Bearer token. "
            "Empty = no authentication (bind to localhost only)."
        ),
    )

    event_log: bool = field(
        default=True,
        metadata=_doc(
            "Keep the event log (GET /api/v1/events, wait_seconds, events across replicas). "
            "false: events reach this process's own subscribers only (metrics, notifications)."
        ),
    )
    event_retention_s: float = field(
        default=86_400.0, metadata=_doc("Event log: events older than this are trimmed.")
    )
    event_retention_count: int = field(
        default=1_000_000,
        metadata=_doc(
            "Event log: events beyond the newest this many are trimmed (a published batch at "
            "a time, so the rest of the oldest kept batch stays too)."
        ),
    )
    event_client_buffer: int = field(
        default=10_000,
        metadata=_doc(
            "Live stream: events buffered per connection; a client that falls this far behind "
            "is disconnected (it resumes from its cursor)."
        ),
    )

    schedules: bool = field(
        default=True,
        metadata=_doc(
            "Run the scheduler (cron and fixed-rate schedules). false: the schedule API still "
            "works, but this replica never fires (another replica, or none, does)."
        ),
    )
    schedule_grace_s: float = field(
        default=5.0,
        metadata=_doc(
            "Schedules: a tick not fired within this many seconds of its time counts as missed "
            "(its schedule's catchup policy decides whether it still fires)."
        ),
    )
    schedule_batch_ms: float = field(
        default=100.0,
        metadata=_doc(
            "Schedules: passes of the scheduler are at least this far apart, so ticks spread "
            "over time are fired in batches (one transaction per pass); a lone tick on an idle "
            "scheduler fires at once. 0 = a pass per due tick."
        ),
    )
    schedule_leader_ttl_s: float = field(
        default=5.0,
        metadata=_doc(
            "Schedules, distributed: the leader lease; a replica that dies is replaced as "
            "leader within this (renewed five times per TTL)."
        ),
    )
    schedule_sync_s: float = field(
        default=30.0,
        metadata=_doc(
            "Schedules: the leader re-reads schedules edited since its last read this often "
            "(edits are also announced at once; this catches an announcement lost)."
        ),
    )
    schedule_skip_retention_s: float = field(
        default=7 * 86_400.0,
        metadata=_doc("Schedules: skipped ticks are kept in the run history this long."),
    )

    amqp_url: str = field(
        default="",
        repr=False,  # may carry a password
        metadata=_doc(
            "Publish every event to RabbitMQ too (tierq[amqp]): amqp://user:pass@host/vhost. "
            "Empty = no broker."
        ),
    )
    amqp_exchange: str = field(
        default="tierq.events",
        metadata=_doc("The durable topic exchange events go to (routing key <queue>.<event>)."),
    )
    webhook_secret: tuple[str, ...] = field(
        default=(),
        repr=False,
        metadata=_doc(
            "Signing keys (whsec_...) of per-task webhooks, comma-separated: the first is the "
            "current key; any others are previous keys kept during a rotation (each delivery "
            "carries a signature per key). Empty = tasks may not ask for webhooks."
        ),
    )
    webhook_timeout_s: float = field(
        default=10.0, metadata=_doc("Webhook delivery: the longest one attempt may take.")
    )
    notify_retry_horizon_s: float = field(
        default=86_400.0,
        metadata=_doc(
            "Notifications are retried (exponential backoff, jitter, Retry-After) for this "
            "long, then given up; a subscription whose delivery is given up is disabled."
        ),
    )
    notify_retry_base_s: float = field(
        default=1.0,
        metadata=_doc("Notifications: the first retry delay; doubles per attempt (jitter)."),
    )
    notify_retry_max_s: float = field(
        default=3600.0, metadata=_doc("Notifications: the longest delay between two attempts.")
    )
    smtp_host: str = field(
        default="", metadata=_doc("SMTP server for email notifications. Empty = no email.")
    )
    smtp_port: int = field(default=25, metadata=_doc("SMTP port."))
    smtp_tls: str = field(
        default="off",
        metadata=_doc("SMTP transport security: off, starttls or tls (implicit TLS)."),
    )
    smtp_user: str = field(default="", metadata=_doc("SMTP login. Empty = no login."))
    smtp_password: str = field(default="", repr=False, metadata=_doc("SMTP password."))
    smtp_from: str = field(
        default="tierq@localhost", metadata=_doc("Sender address of notification emails.")
    )
    smtp_timeout_s: float = field(
        default=30.0, metadata=_doc("Email delivery: the longest one attempt may take.")
    )

    def __post_init__(self) -> None:
        _check(self.port >= 0 and self.port < 65536, "port", "must be 0..65535")
        _check(self.workers >= 1, "workers", "must be at least 1")
        _check(self.memory_limit >= 1, "memory_limit", "must be at least 1")
        _check(self.retry_base_ms >= 0, "retry_base_ms", "must be >= 0")
        _check(self.retry_max_ms >= self.retry_base_ms, "retry_max_ms", "must be >= retry_base_ms")
        _check(self.max_batch >= 1, "max_batch", "must be at least 1")
        _check(self.max_body_bytes >= 1024, "max_body_bytes", "must be at least 1024")
        _check(self.commit_window_ms >= 0, "commit_window_ms", "must be >= 0")
        _check(self.commit_small_slots >= 1, "commit_small_slots", "must be at least 1")
        _check(self.flush_interval_ms > 0, "flush_interval_ms", "must be > 0")
        _check(self.heartbeat_s > 0, "heartbeat_s", "must be > 0")
        _check(
            self.heartbeat_ttl_s > self.heartbeat_s, "heartbeat_ttl_s", "must exceed heartbeat_s"
        )
        _check(self.shutdown_grace_s >= 0, "shutdown_grace_s", "must be >= 0")
        _check(self.default_max_retries >= 0, "default_max_retries", "must be >= 0")
        _check(self.default_timeout_s > 0, "default_timeout_s", "must be > 0")
        _check(self.event_retention_s > 0, "event_retention_s", "must be > 0")
        _check(self.event_retention_count >= 1, "event_retention_count", "must be at least 1")
        _check(self.event_client_buffer >= 100, "event_client_buffer", "must be at least 100")
        _check(
            all(_is_webhook_secret(k) for k in self.webhook_secret),
            "webhook_secret",
            "each key must be whsec_ followed by base64 of at least 24 bytes",
        )
        _check(
            self.amqp_url == "" or self.amqp_url.startswith(("amqp://", "amqps://")),
            "amqp_url",
            "must be empty or start with amqp:// or amqps://",
        )
        _check(
            bool(re.fullmatch(r"[A-Za-z0-9_.:-]{1,255}", self.amqp_exchange)),
            "amqp_exchange",
            "must be 1-255 letters, digits or _.:-",
        )
        _check(self.schedule_grace_s > 0, "schedule_grace_s", "must be > 0")
        _check(self.schedule_leader_ttl_s >= 1, "schedule_leader_ttl_s", "must be at least 1")
        _check(self.schedule_sync_s > 0, "schedule_sync_s", "must be > 0")
        _check(0 <= self.schedule_batch_ms <= 10_000, "schedule_batch_ms", "must be 0 to 10000")
        _check(self.schedule_skip_retention_s > 0, "schedule_skip_retention_s", "must be > 0")
        _check(self.webhook_timeout_s > 0, "webhook_timeout_s", "must be > 0")
        _check(self.notify_retry_horizon_s > 0, "notify_retry_horizon_s", "must be > 0")
        _check(self.notify_retry_base_s > 0, "notify_retry_base_s", "must be > 0")
        _check(
            self.notify_retry_max_s >= self.notify_retry_base_s,
            "notify_retry_max_s",
            "must be >= notify_retry_base_s",
        )
        _check(0 < self.smtp_port < 65536, "smtp_port", "must be 1..65535")
        _check(
            self.smtp_tls in ("off", "starttls", "tls"), "smtp_tls", "must be off, starttls or tls"
        )
        _check(self.smtp_timeout_s > 0, "smtp_timeout_s", "must be > 0")
        _check("@" in self.smtp_from, "smtp_from", "must be an email address")
        _check(
            self.sqlite_synchronous in ("OFF", "NORMAL", "FULL", "EXTRA"),
            "sqlite_synchronous",
            "must be OFF, NORMAL, FULL or EXTRA",
        )
        _check(
            self.database_url.startswith(("sqlite://", "postgresql://", "postgres://")),
            "database_url",
            "must start with sqlite:// or postgresql://",
        )
        _check(
            self.redis_url == "" or self.redis_url.startswith(("redis://", "rediss://", "unix://")),
            "redis_url",
            "must be empty or start with redis://",
        )
        _check(
            bool(re.fullmatch(r"[A-Za-z0-9_:.-]{1,64}", self.redis_prefix)),
            "redis_prefix",
            "must be 1-64 letters, digits or _:.-",
        )
        _check(
            bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", self.database_schema)),
            "database_schema",
            "must be a plain SQL identifier",
        )
        _check(
            self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
            "log_level",
            "must be DEBUG, INFO, WARNING or ERROR",
        )

    @property
    def distributed(self) -> bool:
        return bool(self.redis_url)

    def replace(self, **changes: Any) -> Settings:
        return from_mapping({**_as_dict(self), **changes})

    @staticmethod
    def describe() -> list[tuple[str, str, str]]:
        """(environment variable, default, meaning) for every setting; used by --help."""
        return [
            (ENV_PREFIX + f.name.upper(), repr(f.default), f.metadata.get("doc", ""))
            for f in fields(Settings)
        ]


def _is_webhook_secret(key: str) -> bool:
    if not key.startswith("whsec_"):
        return False
    raw = key[6:].rstrip("=")
    try:
        return len(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)) >= 24
    except (binascii.Error, ValueError):
        return False


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: {message}")


def _as_dict(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


_FIELDS = {f.name: f for f in fields(Settings)}


def _coerce(name: str, raw: Any) -> Any:
    default = _FIELDS[name].default
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if isinstance(default, int):
            return int(text.replace("_", ""))
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple):
            return tuple(part.strip() for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: cannot parse {raw!r} ({exc})") from None
    if name in ("sqlite_synchronous", "log_level"):
        return text.upper()
    if name == "smtp_tls":
        return text.lower()
    return text


def from_mapping(values: Mapping[str, Any]) -> Settings:
    """Build settings from field names to values (strings are parsed). Unknown names fail."""
    unknown = sorted(set(values) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{ENV_PREFIX}{unknown[0].upper()}: unknown setting")
    parsed = {name: _coerce(name, value) for name, value in values.items()}
    try:
        return Settings(**parsed)
    except TypeError as exc:  # a wrong type passed programmatically
        raise ConfigError(str(exc)) from None


def from_env(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Defaults, then ``TIERQ_*`` variables, then ``overrides`` (command-line flags)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for key, value in env.items():
        # TIERQ_TEST_* is the test suite's namespace (service URLs), never a server setting.
        if key.startswith(ENV_PREFIX) and not key.startswith(TEST_PREFIX):
            values[key[len(ENV_PREFIX) :].lower()] = value
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_mapping(values)


__all__ = ["ConfigError", "Settings", "from_env", "from_mapping"]

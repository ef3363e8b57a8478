"""Settings: one frozen, typed object built from defaults, a settings file (``file.py``),
``TIERQ_*`` variables and flags (read in that order by ``sources.py``).

Every field documents its meaning, special values and default. Unknown ``TIERQ_*`` variables
and malformed values stop start-up with a one-line error naming the setting: a setting that is
silently ignored is worse than none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tierq.config.checks import validate
from tierq.config.errors import ENV_PREFIX, ConfigError


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
    log_format: str = field(
        default="auto",
        metadata=_doc(
            "Log lines: json (one object per line: time, level, logger, message, node, "
            "request_id, task_id, attempt, tenant), text, or auto (text on a terminal, else "
            "json)."
        ),
    )
    log_levels: str = field(
        default="",
        metadata=_doc(
            "Levels per logger over log_level, comma-separated: "
            "tierq.flow=DEBUG,aiohttp.access=WARNING."
        ),
    )
    retention_succeeded_s: float = field(
        default=7 * 86_400.0,
        metadata=_doc("Succeeded tasks are deleted this long after they finished. 0 = kept."),
    )
    retention_failed_s: float = field(
        default=30 * 86_400.0,
        metadata=_doc("Failed (dead-lettered) tasks are deleted this long after. 0 = kept."),
    )
    retention_cancelled_s: float = field(
        default=30 * 86_400.0,
        metadata=_doc("Cancelled tasks are deleted this long after. 0 = kept."),
    )
    retention_batch: int = field(
        default=1000,
        metadata=_doc("Retention: the most tasks one background delete removes."),
    )

    # ---- access control (README, "Access control") --------------------------------------
    auth: str = field(
        default="auto",
        metadata=_doc(
            "auto: credentials are required once the record store holds a live API key or JWT "
            "is configured; required: always; off: never. Without credentials only loopback "
            "clients are served."
        ),
    )
    insecure_no_auth: bool = field(
        default=False,
        metadata=_doc(
            "Serve clients on any address without credentials (also --insecure-no-auth). "
            "Without it, binding a non-loopback address with no credentials refuses to start."
        ),
    )
    auth_cache_s: float = field(
        default=1.0,
        metadata=_doc(
            "API keys read from the record store are trusted this long in memory: a revoked "
            "or expired key stops working on every replica within it."
        ),
    )
    ui_session_secret: str = field(
        default="",
        repr=False,
        metadata=_doc(
            "Signs the dashboard's session cookies; set the same value on every replica (empty: "
            "a random secret per process, so a session works on the replica that made it)."
        ),
    )
    ui_session_ttl_s: float = field(
        default=8 * 3600.0,
        metadata=_doc("How long a dashboard sign-in lasts (a JWT's own expiry ends it sooner)."),
    )
    key_rotation_grace_s: float = field(
        default=86_400.0,
        metadata=_doc("Rotating a key: how long its previous secret keeps working (default)."),
    )
    trusted_proxies: tuple[str, ...] = field(
        default=("127.0.0.0/8", "::1/128"),
        metadata=_doc(
            "CIDRs of proxies (nginx) whose X-Forwarded-For names the client: the loopback "
            "rule, the brute-force guard and the audit log then see the client's address, not "
            "the proxy's. Empty = the peer address is the client, and a forwarded request is "
            "never a loopback client."
        ),
    )
    auth_failure_limit: int = field(
        default=20,
        metadata=_doc(
            "Brute-force guard: failed authentications from one address within "
            "auth_failure_window_s before it gets 429. 0 = no guard."
        ),
    )
    auth_failure_window_s: float = field(
        default=60.0, metadata=_doc("Brute-force guard: the window failures are counted in.")
    )
    jwt_algorithms: tuple[str, ...] = field(
        default=("RS256",),
        metadata=_doc(
            "JWT algorithms accepted (never taken from the token): HS256/384/512, or "
            "RS*, PS*, ES*, EdDSA; HMAC and public-key algorithms cannot be mixed."
        ),
    )
    jwt_key: str = field(
        default="",
        repr=False,
        metadata=_doc(
            "JWT verification key: a PEM public key (RS/PS/ES/EdDSA) or the HMAC secret (HS). "
            "Empty with jwt_jwks_url empty = no JWT."
        ),
    )
    jwt_jwks_url: str = field(
        default="",
        metadata=_doc(
            "JWKS URL the verification keys are fetched from (cached; fetched again for an "
            "unknown kid at most once a minute; cached keys outlive an endpoint that is down)."
        ),
    )
    jwt_issuer: str = field(default="", metadata=_doc("Required JWT iss (required with JWT)."))
    jwt_audience: str = field(default="", metadata=_doc("Required JWT aud (required with JWT)."))
    jwt_role_claim: str = field(default="role", metadata=_doc("JWT claim naming the role."))
    jwt_tenant_claim: str = field(default="tenant", metadata=_doc("JWT claim naming the tenant."))
    jwt_leeway_s: float = field(
        default=30.0, metadata=_doc("JWT exp/nbf leeway for clock skew, in seconds.")
    )
    rate_submit_per_s: float = field(
        default=0.0,
        metadata=_doc(
            "Rate limit of submissions per key and per tenant, in tasks per second (a batch "
            "of N costs N). 0 = no limit."
        ),
    )
    rate_submit_burst: int = field(
        default=0, metadata=_doc("Submissions: the burst (0 = one second's worth).")
    )
    rate_read_per_s: float = field(
        default=0.0, metadata=_doc("Rate limit of reads per key and per tenant. 0 = no limit.")
    )
    rate_read_burst: int = field(default=0, metadata=_doc("Reads: the burst (0 = one second's)."))
    rate_admin_per_s: float = field(
        default=0.0,
        metadata=_doc(
            "Rate limit of other changes (cancel, retry, schedules, keys, webhooks) per key "
            "and per tenant. 0 = no limit."
        ),
    )
    rate_admin_burst: int = field(
        default=0, metadata=_doc("Other changes: the burst (0 = one second's worth).")
    )
    rate_tenants: str = field(
        default="",
        metadata=_doc(
            'Per-tenant limits over the defaults, JSON: {"acme": {"submit": {"per_second": '
            '500, "burst": 100}}}. A key\'s own limits are set when it is created.'
        ),
    )
    tenant_max_inflight: int = field(
        default=0,
        metadata=_doc(
            "Most requests of one tenant in progress at once in this process (429 beyond). "
            "0 = no cap."
        ),
    )
    shed_waiting_submissions: int = field(
        default=10_000,
        metadata=_doc(
            "Load shedding: while this many submissions wait for a record-tier transaction, "
            "new ones get 503 with Retry-After instead of queueing in memory. 0 = never."
        ),
    )
    audit: bool = field(
        default=True,
        metadata=_doc("Keep the audit log of every change and every authentication failure."),
    )
    audit_retention_s: float = field(
        default=90 * 86_400.0, metadata=_doc("Audit rows older than this are deleted.")
    )
    redact_fields: tuple[str, ...] = field(
        default=(
            "password",
            "passwd",
            "token",
            "secret",
            "authorization",
            "api_key",
            "apikey",
            "access_token",
            "refresh_token",
            "client_secret",
            "private_key",
            "cookie",
        ),
        metadata=_doc(
            "Field names whose values are masked wherever tierq records a request body "
            "(the audit log, logs), at any depth, compared case-insensitively."
        ),
    )

    breakers: bool = field(
        default=True,
        metadata=_doc(
            "Circuit breakers: a task type (or http target host, or a task's own breaker "
            "key) that keeps failing stops being started until probes succeed."
        ),
    )
    breaker_window: str = field(
        default="count",
        metadata=_doc(
            "Breaker sliding window: count (the last breaker_window_size calls) or time "
            "(the last breaker_window_s seconds)."
        ),
    )
    breaker_window_size: int = field(
        default=20, metadata=_doc("Breaker count window: how many recent calls are judged.")
    )
    breaker_window_s: float = field(
        default=30.0, metadata=_doc("Breaker time window: how many recent seconds are judged.")
    )
    breaker_failure_ratio: float = field(
        default=0.5,
        metadata=_doc("A breaker opens when this share of the calls in its window failed."),
    )
    breaker_min_calls: int = field(
        default=10, metadata=_doc("A breaker never opens on fewer calls than this in its window.")
    )
    breaker_cooldown_s: float = field(
        default=5.0,
        metadata=_doc("How long a breaker stays open after its first trip (doubles per trip)."),
    )
    breaker_cooldown_max_s: float = field(
        default=300.0, metadata=_doc("The longest a breaker stays open before probing.")
    )
    breaker_probes: int = field(
        default=3,
        metadata=_doc(
            "Half-open: how many probe tasks run; all succeeding closes the breaker, any "
            "failure opens it again."
        ),
    )
    breaker_count_client_errors: bool = field(
        default=False,
        metadata=_doc(
            "Whether permanent failures (an http 4xx, a PermanentError) count against a "
            "breaker. Timeouts, 5xx and connection errors always do."
        ),
    )
    queue_limits: str = field(
        default="",
        metadata=_doc(
            'Per-queue limits across every replica, JSON: {"emails": {"max_running": 3, '
            '"rate": {"limit": 10, "per_seconds": 1}}}. Changeable at runtime with PATCH '
            "/api/v1/queues/{name}; a stored change wins over this default."
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

    tracing: bool = field(
        default=False,
        metadata=_doc(
            "OpenTelemetry spans for HTTP requests, submissions and task attempts (needs "
            "tierq[otel]); the OTLP exporter is configured by the standard OTEL_* variables."
        ),
    )
    metrics_rollups: bool = field(
        default=True,
        metadata=_doc(
            "Keep per-minute rollups of task outcomes in the record tier (throughput, failure "
            "rate, latency percentiles) for /health/metrics and /api/v1/tasks/metrics."
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
        validate(self)

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


def _as_dict(settings: Settings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in fields(settings)}


FIELDS = {f.name: f for f in fields(Settings)}
# Settings that existed once: a deployment still setting one learns what replaced it.
_REMOVED = {
    "api_keys": "removed: API keys are stored hashed in the record store; create one with "
    "`tierq keys create --name NAME --role admin` (README, Access control)",
}


def _coerce(name: str, raw: Any) -> Any:
    default = FIELDS[name].default
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
    if name in ("smtp_tls", "auth", "log_format"):
        return text.lower()
    return text


def from_mapping(values: Mapping[str, Any]) -> Settings:
    """Build settings from field names to values (strings are parsed). Unknown names fail."""
    unknown = sorted(set(values) - set(FIELDS))
    removed = [name for name in unknown if name in _REMOVED]
    if removed:
        raise ConfigError(f"{ENV_PREFIX}{removed[0].upper()}: {_REMOVED[removed[0]]}")
    if unknown:
        raise ConfigError(f"{ENV_PREFIX}{unknown[0].upper()}: unknown setting")
    parsed = {name: _coerce(name, value) for name, value in values.items()}
    try:
        return Settings(**parsed)
    except TypeError as exc:  # a wrong type passed programmatically
        raise ConfigError(str(exc)) from None

"""The checks every Settings value passes at construction: a malformed value stops start-up
with a one-line error naming its variable."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from typing import Any

from tierq.config.errors import check

_JWT_HMAC = ("HS256", "HS384", "HS512")
_JWT_PUBLIC = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
_RATE_CLASSES = ("submit", "read", "admin")


def validate(s: Any) -> None:
    """``s``: the Settings being built (not imported here: settings.py imports this)."""
    _validate_access(s)
    _validate_retention(s)
    _validate_flow(s)
    check(s.port >= 0 and s.port < 65536, "port", "must be 0..65535")
    check(s.workers >= 1, "workers", "must be at least 1")
    check(s.memory_limit >= 1, "memory_limit", "must be at least 1")
    check(s.retry_base_ms >= 0, "retry_base_ms", "must be >= 0")
    check(s.retry_max_ms >= s.retry_base_ms, "retry_max_ms", "must be >= retry_base_ms")
    check(s.max_batch >= 1, "max_batch", "must be at least 1")
    check(s.max_body_bytes >= 1024, "max_body_bytes", "must be at least 1024")
    check(s.commit_window_ms >= 0, "commit_window_ms", "must be >= 0")
    check(s.commit_small_slots >= 1, "commit_small_slots", "must be at least 1")
    check(s.flush_interval_ms > 0, "flush_interval_ms", "must be > 0")
    check(s.heartbeat_s > 0, "heartbeat_s", "must be > 0")
    check(s.heartbeat_ttl_s > s.heartbeat_s, "heartbeat_ttl_s", "must exceed heartbeat_s")
    check(s.shutdown_grace_s >= 0, "shutdown_grace_s", "must be >= 0")
    check(s.default_max_retries >= 0, "default_max_retries", "must be >= 0")
    check(s.default_timeout_s > 0, "default_timeout_s", "must be > 0")
    check(s.event_retention_s > 0, "event_retention_s", "must be > 0")
    check(s.event_retention_count >= 1, "event_retention_count", "must be at least 1")
    check(s.event_client_buffer >= 100, "event_client_buffer", "must be at least 100")
    check(
        all(is_webhook_secret(k) for k in s.webhook_secret),
        "webhook_secret",
        "each key must be whsec_ followed by base64 of at least 24 bytes",
    )
    check(
        s.amqp_url == "" or s.amqp_url.startswith(("amqp://", "amqps://")),
        "amqp_url",
        "must be empty or start with amqp:// or amqps://",
    )
    check(
        bool(re.fullmatch(r"[A-Za-z0-9_.:-]{1,255}", s.amqp_exchange)),
        "amqp_exchange",
        "must be 1-255 letters, digits or _.:-",
    )
    check(s.schedule_grace_s > 0, "schedule_grace_s", "must be > 0")
    check(s.schedule_leader_ttl_s >= 1, "schedule_leader_ttl_s", "must be at least 1")
    check(s.schedule_sync_s > 0, "schedule_sync_s", "must be > 0")
    check(0 <= s.schedule_batch_ms <= 10_000, "schedule_batch_ms", "must be 0 to 10000")
    check(s.schedule_skip_retention_s > 0, "schedule_skip_retention_s", "must be > 0")
    check(s.webhook_timeout_s > 0, "webhook_timeout_s", "must be > 0")
    check(s.notify_retry_horizon_s > 0, "notify_retry_horizon_s", "must be > 0")
    check(s.notify_retry_base_s > 0, "notify_retry_base_s", "must be > 0")
    check(
        s.notify_retry_max_s >= s.notify_retry_base_s,
        "notify_retry_max_s",
        "must be >= notify_retry_base_s",
    )
    check(0 < s.smtp_port < 65536, "smtp_port", "must be 1..65535")
    check(s.smtp_tls in ("off", "starttls", "tls"), "smtp_tls", "must be off, starttls or tls")
    check(s.smtp_timeout_s > 0, "smtp_timeout_s", "must be > 0")
    check("@" in s.smtp_from, "smtp_from", "must be an email address")
    check(
        s.sqlite_synchronous in ("OFF", "NORMAL", "FULL", "EXTRA"),
        "sqlite_synchronous",
        "must be OFF, NORMAL, FULL or EXTRA",
    )
    check(
        s.database_url.startswith(("sqlite://", "postgresql://", "postgres://")),
        "database_url",
        "must start with sqlite:// or postgresql://",
    )
    check(
        s.redis_url == "" or s.redis_url.startswith(("redis://", "rediss://", "unix://")),
        "redis_url",
        "must be empty or start with redis://",
    )
    check(
        bool(re.fullmatch(r"[A-Za-z0-9_:.-]{1,64}", s.redis_prefix)),
        "redis_prefix",
        "must be 1-64 letters, digits or _:.-",
    )
    check(
        bool(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", s.database_schema)),
        "database_schema",
        "must be a plain SQL identifier",
    )
    check(
        s.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
        "log_level",
        "must be DEBUG, INFO, WARNING or ERROR",
    )
    check(s.log_format in ("auto", "json", "text"), "log_format", "must be auto, json or text")
    if s.log_levels:
        try:
            parse_levels(s.log_levels)
        except ValueError as exc:
            check(False, "log_levels", str(exc))


def is_webhook_secret(key: str) -> bool:
    if not key.startswith("whsec_"):
        return False
    raw = key[6:].rstrip("=")
    try:
        return len(base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)) >= 24
    except (binascii.Error, ValueError):
        return False


def _validate_retention(s: Any) -> None:
    for state in ("succeeded", "failed", "cancelled"):
        name = f"retention_{state}_s"
        check(getattr(s, name) >= 0, name, "must be >= 0 (0 = kept for ever)")
    check(1 <= s.retention_batch <= 100_000, "retention_batch", "must be 1 to 100000")


def _validate_access(s: Any) -> None:
    check(s.auth in ("auto", "required", "off"), "auth", "must be auto, required or off")
    check(s.auth_cache_s > 0 and s.auth_cache_s <= 60, "auth_cache_s", "must be > 0 and <= 60")
    check(s.key_rotation_grace_s >= 0, "key_rotation_grace_s", "must be >= 0")
    check(s.auth_failure_limit >= 0, "auth_failure_limit", "must be >= 0")
    for cidr in s.trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            check(False, "trusted_proxies", f"{cidr!r} is not a CIDR or an address")
    check(s.auth_failure_window_s > 0, "auth_failure_window_s", "must be > 0")
    algorithms = set(s.jwt_algorithms)
    check(bool(algorithms), "jwt_algorithms", "must name at least one algorithm")
    check(
        algorithms <= set(_JWT_HMAC + _JWT_PUBLIC),
        "jwt_algorithms",
        f"must be among {', '.join(_JWT_HMAC + _JWT_PUBLIC)} ('none' is never accepted)",
    )
    check(
        algorithms <= set(_JWT_HMAC) or not algorithms & set(_JWT_HMAC),
        "jwt_algorithms",
        "cannot mix HMAC (HS*) and public-key algorithms (key confusion)",
    )
    if s.jwt_key or s.jwt_jwks_url:
        check(bool(s.jwt_issuer), "jwt_issuer", "is required when JWT is configured")
        check(bool(s.jwt_audience), "jwt_audience", "is required when JWT is configured")
        check(
            not (s.jwt_jwks_url and algorithms & set(_JWT_HMAC)),
            "jwt_algorithms",
            "a JWKS serves public keys: use RS*, PS*, ES* or EdDSA",
        )
    check(
        s.jwt_jwks_url == "" or s.jwt_jwks_url.startswith(("https://", "http://")),
        "jwt_jwks_url",
        "must be an http(s) URL",
    )
    check(s.jwt_leeway_s >= 0 and s.jwt_leeway_s <= 300, "jwt_leeway_s", "must be 0 to 300")
    for kind in _RATE_CLASSES:
        check(getattr(s, f"rate_{kind}_per_s") >= 0, f"rate_{kind}_per_s", "must be >= 0")
        check(getattr(s, f"rate_{kind}_burst") >= 0, f"rate_{kind}_burst", "must be >= 0")
    if s.rate_tenants:
        try:
            tenants = json.loads(s.rate_tenants)
            check(isinstance(tenants, dict), "rate_tenants", "must be a JSON object")
            for tenant, limits in tenants.items():
                parse_rate_limits(limits, f"rate_tenants.{tenant}")
        except ValueError as exc:
            check(False, "rate_tenants", str(exc))
    check(s.tenant_max_inflight >= 0, "tenant_max_inflight", "must be >= 0")
    check(s.shed_waiting_submissions >= 0, "shed_waiting_submissions", "must be >= 0")
    check(s.audit_retention_s > 0, "audit_retention_s", "must be > 0")


def parse_rate_limits(limits: Any, where: str) -> dict[str, tuple[float, int]]:
    """``{"submit": {"per_second": 10, "burst": 5}, ...}`` -> {class: (per_second, burst)};
    ValueError naming ``where`` and the field for anything else. Used for a tenant's limits
    here and for a key's limits by the API."""
    if not isinstance(limits, dict):
        raise ValueError(f"{where} must be an object of route classes")
    out: dict[str, tuple[float, int]] = {}
    for kind, limit in limits.items():
        path = f"{where}.{kind}"
        if kind not in _RATE_CLASSES:
            raise ValueError(f"{path}: the route class must be one of {', '.join(_RATE_CLASSES)}")
        if not isinstance(limit, dict) or set(limit) - {"per_second", "burst"}:
            raise ValueError(f'{path} must be {{"per_second": N, "burst": N}}')
        rate, burst = limit.get("per_second"), limit.get("burst", 0)
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
            raise ValueError(f"{path}.per_second must be a number > 0")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
            raise ValueError(f"{path}.burst must be an integer >= 0")
        out[kind] = (float(rate), burst or max(1, round(rate)))
    return out


def _validate_flow(s: Any) -> None:
    check(s.breaker_window in ("count", "time"), "breaker_window", "must be count or time")
    check(s.breaker_window_size >= 1, "breaker_window_size", "must be at least 1")
    check(s.breaker_window_s > 0, "breaker_window_s", "must be > 0")
    check(0 < s.breaker_failure_ratio <= 1, "breaker_failure_ratio", "must be in (0, 1]")
    check(s.breaker_min_calls >= 1, "breaker_min_calls", "must be at least 1")
    check(s.breaker_cooldown_s > 0, "breaker_cooldown_s", "must be > 0")
    check(
        s.breaker_cooldown_max_s >= s.breaker_cooldown_s,
        "breaker_cooldown_max_s",
        "must be >= breaker_cooldown_s",
    )
    check(s.breaker_probes >= 1, "breaker_probes", "must be at least 1")
    if s.queue_limits:
        try:
            parse_queue_limits(s.queue_limits)
        except ValueError as exc:
            check(False, "queue_limits", str(exc))


QueueLimit = tuple[int | None, int | None, float | None]  # max_running, rate limit, per_s
# Bounds of a queue's limits: past them a limit means nothing (more than any deployment runs,
# a window longer than a year), and a bigger integer overflows the stores' 64-bit columns.
MAX_QUEUE_RUNNING = 1_000_000
MAX_RATE_LIMIT = 1_000_000_000
MAX_RATE_WINDOW_S = 366 * 86400.0


def parse_queue_limits(text: str) -> dict[str, QueueLimit]:
    """``queue_limits``: {queue: {"max_running": N, "rate": {...}}} -> {queue: limit}."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"is not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError("must be an object of queue names")
    return {str(queue): parse_queue_limit(spec, str(queue)) for queue, spec in doc.items()}


def parse_queue_limit(spec: Any, where: str, partial: QueueLimit | None = None) -> QueueLimit:
    """One queue's limits, ``{"max_running": N|null, "rate": {"limit": N, "per_seconds":
    S}|null}``; fields left out keep ``partial``'s values (a PATCH). ValueError names the
    field path under ``where`` ("" = the top level)."""
    prefix = f"{where}." if where else ""
    if not isinstance(spec, dict):
        raise ValueError(f"{where or '$'}: must be an object")
    unknown = sorted(set(spec) - {"max_running", "rate"})
    if unknown:
        raise ValueError(f"{prefix}{unknown[0]}: unknown field (max_running, rate)")
    max_running, limit, per = partial or (None, None, None)
    if "max_running" in spec:
        value = spec["max_running"]
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 1 <= value <= MAX_QUEUE_RUNNING
        ):
            raise ValueError(
                f"{prefix}max_running: must be an integer from 1 to {MAX_QUEUE_RUNNING} or null"
            )
        max_running = value
    if "rate" in spec:
        rate = spec["rate"]
        if rate is None:
            limit, per = None, None
        else:
            if not isinstance(rate, dict) or set(rate) != {"limit", "per_seconds"}:
                raise ValueError(f'{prefix}rate: must be {{"limit": N, "per_seconds": S}} or null')
            n, seconds = rate["limit"], rate["per_seconds"]
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_RATE_LIMIT:
                raise ValueError(
                    f"{prefix}rate.limit: must be an integer from 1 to {MAX_RATE_LIMIT}"
                )
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not 0 < seconds <= MAX_RATE_WINDOW_S
            ):
                raise ValueError(
                    f"{prefix}rate.per_seconds: must be a number > 0 and <= {MAX_RATE_WINDOW_S:g}"
                )
            limit, per = n, float(seconds)
    return max_running, limit, per


def parse_levels(text: str) -> dict[str, str]:
    """``tierq.flow=DEBUG,aiohttp.access=WARNING`` -> {logger: level}; ValueError naming the
    entry that is not ``logger=LEVEL`` with a known level."""
    levels: dict[str, str] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, level = entry.partition("=")
        level = level.strip().upper()
        if not sep or not name.strip() or level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"{entry!r} is not logger=DEBUG|INFO|WARNING|ERROR")
        levels[name.strip()] = level
    return levels

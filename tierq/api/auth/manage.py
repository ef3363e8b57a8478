"""Making and rotating API keys: shared by the HTTP routes and ``tierq keys`` (which works on
the record store directly, so the first admin key of a deployment can be made before any
credential exists). The secret is returned once and never stored."""

from __future__ import annotations

import re
from typing import Any

import orjson

from tierq.api.auth import keys as key_format
from tierq.config.checks import parse_rate_limits
from tierq.engine.errors import FieldError
from tierq.ids import new_id
from tierq.model import ALL_TENANTS, ROLES, ApiKey
from tierq.storage.keys import KeyStore

_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_NAME = 200


def check_tenant(tenant: str, path: str = "$.tenant") -> str:
    if tenant != ALL_TENANTS and not _TENANT.fullmatch(tenant):
        raise FieldError(path, "must be '*' or 1-64 letters, digits or _.- (starting alnum)")
    return tenant


def check_fields(name: str, role: str, rate_limits: Any) -> bytes | None:
    if not name.strip() or len(name) > MAX_NAME:
        raise FieldError("$.name", f"must be 1-{MAX_NAME} characters")
    if role not in ROLES:
        raise FieldError("$.role", f"must be one of {', '.join(ROLES)}")
    if rate_limits is None:
        return None
    try:
        parse_rate_limits(rate_limits, "rate_limits")
    except ValueError as exc:
        path, _, message = str(exc).partition(": ")
        field = path.split(" ")[0] if not message else path
        raise FieldError(f"$.{field}", message or str(exc)) from None
    return orjson.dumps(rate_limits)


async def create_key(
    store: KeyStore,
    *,
    name: str,
    role: str,
    tenant: str,
    now: float,
    expires_at: float | None = None,
    rate_limits: Any = None,
) -> tuple[ApiKey, str]:
    """Store a new key; (its record, its secret)."""
    limits = check_fields(name, role, rate_limits)
    check_tenant(tenant)
    if expires_at is not None and expires_at <= now:
        raise FieldError("$.expires_at", "must be in the future")
    secret = key_format.generate()
    key = ApiKey(
        id=new_id(now),
        name=name.strip(),
        role=role,
        tenant=tenant,
        secret_hash=key_format.hash_key(secret),
        prefix=key_format.display(secret),
        created_at=now,
        expires_at=expires_at,
        rate_limits=limits,
    )
    await store.create(key)
    return key, secret


async def rotate_key(
    store: KeyStore, key_id: str, tenant: str | None, grace_s: float, now: float
) -> tuple[ApiKey, str] | None:
    """A new secret for a live key; the old one works ``grace_s`` longer. None: no live key."""
    secret = key_format.generate()
    key = await store.rotate(
        key_id, tenant, key_format.hash_key(secret), key_format.display(secret), now + grace_s
    )
    return None if key is None else (key, secret)

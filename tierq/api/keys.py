"""Routes of API keys (``/api/v1/keys``, admin): create (the secret is shown once), list,
get, revoke, rotate. A tenant's admin manages its own tenant's keys; a platform admin (tenant
``*``) any tenant's, and only it may make platform keys."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web

from tierq.api.auth.access import ACCESS, AUDIT_CHANGES, AUDIT_RESOURCE, PRINCIPAL
from tierq.api.auth.manage import check_tenant, create_key, rotate_key
from tierq.api.errors import ApiError
from tierq.api.permissions import Permission
from tierq.api.routes import json_response, read_json_body
from tierq.api.routing import Route
from tierq.api.schemas import decode_as
from tierq.api.shapes import NULL, KeyList, KeyOut
from tierq.engine.errors import FieldError
from tierq.model import ALL_TENANTS, ApiKey
from tierq.timefmt import iso

MAX_GRACE_S = 30 * 86_400.0


class KeyIn(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    role: str
    tenant: str | None = None
    expires_in_seconds: float | None = None
    rate_limits: dict[str, Any] | None = None


class RotateIn(msgspec.Struct, forbid_unknown_fields=True):
    grace_seconds: float | None = None


_key_in = msgspec.json.Decoder(KeyIn)
_rotate_in = msgspec.json.Decoder(RotateIn)


def key_out(key: ApiKey, secret: str | None = None) -> KeyOut:
    out = KeyOut(
        id=key.id,
        name=key.name,
        role=key.role,
        tenant=key.tenant,
        prefix=key.prefix,
        created_at=iso(key.created_at),
        expires_at=iso(key.expires_at),
        last_used_at=iso(key.last_used_at),
        revoked_at=iso(key.revoked_at),
        previous_valid_until=iso(key.previous_until),
        rate_limits=NULL if key.rate_limits is None else msgspec.Raw(key.rate_limits),
    )
    if secret is not None:
        out.secret = secret
    return out


def _key_id(request: web.Request) -> str:
    return request.match_info["key_id"]


async def create(request: web.Request) -> web.Response:
    spec = decode_as(_key_in, await read_json_body(request))
    principal = request[PRINCIPAL]
    tenant = principal.tenant if spec.tenant is None else check_tenant(spec.tenant)
    if principal.tenant != ALL_TENANTS and tenant != principal.tenant:
        raise ApiError(403, "forbidden", "a tenant's admin makes keys of its own tenant only")
    now = time.time()
    if spec.expires_in_seconds is not None and spec.expires_in_seconds <= 0:
        raise FieldError("$.expires_in_seconds", "must be > 0")
    expires = None if spec.expires_in_seconds is None else now + spec.expires_in_seconds
    store = request.app[ACCESS].keys
    key, secret = await create_key(
        store,
        name=spec.name,
        role=spec.role,
        tenant=tenant,
        now=now,
        expires_at=expires,
        rate_limits=spec.rate_limits,
    )
    request.app[ACCESS].authenticator.forget([])  # credentials may be required from now on
    request[AUDIT_RESOURCE] = key.id
    request[AUDIT_CHANGES] = msgspec.json.encode(
        {"name": key.name, "role": key.role, "tenant": key.tenant}
    )
    return json_response(key_out(key, secret), 201)


async def list_keys(request: web.Request) -> web.Response:
    keys = await request.app[ACCESS].keys.list_keys(request[PRINCIPAL].scope)
    return json_response(KeyList([key_out(k) for k in keys]))


async def get_key(request: web.Request) -> web.Response:
    key = await request.app[ACCESS].keys.get(_key_id(request), request[PRINCIPAL].scope)
    if key is None:
        raise ApiError(404, "not_found", "no such key")
    return json_response(key_out(key))


async def revoke(request: web.Request) -> web.Response:
    access = request.app[ACCESS]
    key = await access.keys.revoke(_key_id(request), request[PRINCIPAL].scope, time.time())
    if key is None:
        raise ApiError(404, "not_found", "no such key")
    access.authenticator.forget([key.secret_hash, key.previous_hash])
    return json_response(key_out(key))


async def rotate(request: web.Request) -> web.Response:
    access = request.app[ACCESS]
    body = await request.read()
    spec = decode_as(_rotate_in, body) if body else RotateIn()
    grace = access.settings.key_rotation_grace_s
    if spec.grace_seconds is not None:
        if not 0 <= spec.grace_seconds <= MAX_GRACE_S:
            raise FieldError("$.grace_seconds", f"must be 0 to {MAX_GRACE_S:g}")
        grace = spec.grace_seconds
    done = await rotate_key(
        access.keys, _key_id(request), request[PRINCIPAL].scope, grace, time.time()
    )
    if done is None:
        raise ApiError(404, "not_found", "no such live key")
    key, secret = done
    access.authenticator.forget([key.secret_hash, key.previous_hash])
    return json_response(key_out(key, secret))


_ADMIN = Permission.KEYS_ADMIN
_ONE = "/api/v1/keys/{key_id}"
_KEY = ((200, KeyOut),)
ROUTES = [
    Route(
        "POST",
        "/api/v1/keys",
        create,
        _ADMIN,
        "Create an API key (its secret is shown once)",
        body=KeyIn,
        answers=((201, KeyOut),),
    ),
    Route(
        "GET",
        "/api/v1/keys",
        list_keys,
        _ADMIN,
        "List API keys (never their secrets)",
        answers=((200, KeyList),),
    ),
    Route("GET", _ONE, get_key, _ADMIN, "Get an API key", answers=_KEY),
    Route("DELETE", _ONE, revoke, _ADMIN, "Revoke an API key", answers=_KEY),
    Route(
        "POST",
        _ONE + "/rotate",
        rotate,
        _ADMIN,
        "Give a key a new secret; the old one works for a grace period",
        body=RotateIn,
        body_required=False,
        answers=_KEY,
    ),
]

"""``tierq keys create|list|revoke|rotate`` and ``tierq audit verify``: on the record store
directly (``TIERQ_DATABASE_URL``), so the first admin key of a new deployment can be made
before any credential exists. An embedded (SQLite) store belongs to one process: run these
while the server is stopped, or use the HTTP API (``/api/v1/keys``) while it runs.

``keys create`` and ``keys rotate`` print the new secret alone on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tierq.api.auth.manage import create_key, rotate_key
from tierq.api.keys import key_out
from tierq.api.schemas import encode
from tierq.config import Settings
from tierq.model import ROLES, ApiKey
from tierq.storage.audit import AuditStore
from tierq.storage.factory import make_access_stores, make_record_store
from tierq.storage.keys import KeyStore


def add_parsers(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage API keys on the record store directly")
    keys.add_argument("--database-url", help="record tier (TIERQ_DATABASE_URL)")
    action = keys.add_subparsers(dest="action", required=True)
    create = action.add_parser("create", help="make a key; its secret is the last line")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--tenant", default="default", help="tenant, or '*' for every tenant")
    create.add_argument("--expires-in", type=float, help="seconds until the key expires")
    create.add_argument(
        "--rate-limits", help='JSON, e.g. {"submit": {"per_second": 200, "burst": 50}}'
    )
    listing = action.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--tenant", help="only this tenant's keys")
    action.add_parser("revoke", help="revoke a key").add_argument("id")
    rotate = action.add_parser("rotate", help="new secret; the old one works for a grace period")
    rotate.add_argument("id")
    rotate.add_argument("--grace", type=float, help="seconds the old secret keeps working")
    audit = sub.add_parser("audit", help="the audit log")
    audit.add_argument("--database-url", help="record tier (TIERQ_DATABASE_URL)")
    audit_action = audit.add_subparsers(dest="action", required=True)
    audit_action.add_parser("verify", help="check every link of the audit hash chain")


def _key_line(key: ApiKey) -> str:
    """A key as one JSON line, as the API shows it (never the secret)."""
    return encode(key_out(key)).decode()


async def _with_stores(
    settings: Settings, work: Callable[[KeyStore, AuditStore], Awaitable[int]]
) -> int:
    store = make_record_store(settings)
    await store.open()
    try:
        keys, audit = make_access_stores(store)
        return await work(keys, audit)
    finally:
        await store.close()


async def _keys(args: argparse.Namespace, keys: KeyStore, settings: Settings) -> int:
    now = time.time()
    if args.action == "create":
        limits = json.loads(args.rate_limits) if args.rate_limits else None
        expires = None if args.expires_in is None else now + args.expires_in
        key, secret = await create_key(
            keys,
            name=args.name,
            role=args.role,
            tenant=args.tenant,
            now=now,
            expires_at=expires,
            rate_limits=limits,
        )
        print(_key_line(key))
        print(secret)
        return 0
    if args.action == "list":
        for key in await keys.list_keys(args.tenant):
            print(_key_line(key))
        return 0
    if args.action == "revoke":
        revoked = await keys.revoke(args.id, None, now)
        if revoked is None:
            print(f"tierq: no key {args.id}", file=sys.stderr)
            return 1
        print(_key_line(revoked))
        return 0
    grace = settings.key_rotation_grace_s if args.grace is None else args.grace
    done = await rotate_key(keys, args.id, None, grace, now)
    if done is None:
        print(f"tierq: no live key {args.id}", file=sys.stderr)
        return 1
    print(_key_line(done[0]))
    print(done[1])
    return 0


async def _verify(audit: AuditStore) -> int:
    checked, broken = await audit.verify()
    if broken is None:
        print(f"audit log intact: {checked} rows, every link holds")
        return 0
    print(f"audit log BROKEN at seq {broken} (after {checked} intact rows)")
    return 1


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "keys":

        async def work(keys: KeyStore, audit: AuditStore) -> int:
            return await _keys(args, keys, settings)
    else:

        async def work(keys: KeyStore, audit: AuditStore) -> int:
            return await _verify(audit)

    return asyncio.run(_with_stores(settings, work))

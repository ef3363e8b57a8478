"""``tierq schedules ...``: list, get, create, pause, resume, trigger and delete schedules of
a running server, over its HTTP API (``--url``, default ``TIERQ_URL`` or
http://127.0.0.1:8080; ``--api-key`` or ``TIERQ_API_KEY``). Output is the API's JSON, one
document per command, so it can be piped into ``jq``; errors go to stderr with the server's
code, message and field path, and a non-zero exit status."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8080"


def add_parser(sub: Any) -> None:
    schedules = sub.add_parser("schedules", help="manage the schedules of a running server")
    schedules.add_argument("--url", help=f"server base URL (TIERQ_URL, default {DEFAULT_URL})")
    schedules.add_argument("--api-key", help="API key (TIERQ_API_KEY)")
    action = schedules.add_subparsers(dest="action", required=True)
    listing = action.add_parser("list", help="list schedules")
    listing.add_argument("--paused", choices=("true", "false"))
    listing.add_argument("--name", help="name prefix")
    listing.add_argument("--size", type=int, default=100)
    create = action.add_parser("create", help="create a schedule from a JSON file (- = stdin)")
    create.add_argument("--file", required=True)
    for name, text in (
        ("get", "show one schedule with its next runs"),
        ("pause", "pause a schedule"),
        ("resume", "resume a schedule"),
        ("delete", "delete a schedule (its tasks stay)"),
        ("runs", "show a schedule's recent runs"),
    ):
        action.add_parser(name, help=text).add_argument("id")
    trigger = action.add_parser("trigger", help="run a schedule's task now")
    trigger.add_argument("id")
    trigger.add_argument("--idempotency-key", help="a retried trigger with this key fires once")


class ApiFailure(Exception):
    pass


def _request(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    base = (args.url or os.environ.get("TIERQ_URL") or DEFAULT_URL).rstrip("/")
    sent = {"Accept": "application/json", **(headers or {})}
    if body is not None:
        sent["Content-Type"] = "application/json"
    key = args.api_key or os.environ.get("TIERQ_API_KEY")
    if key:
        sent["X-API-Key"] = key
    if not base.startswith(("http://", "https://")):
        raise ApiFailure(f"--url must start with http:// or https://, not {base!r}")
    url = base + path
    request = urllib.request.Request(url, data=body, method=method, headers=sent)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - checked above
            data = resp.read()
    except urllib.error.HTTPError as exc:
        raise ApiFailure(_describe(exc.code, exc.read())) from None
    except urllib.error.URLError as exc:
        raise ApiFailure(f"cannot reach {base}: {exc.reason}") from None
    return json.loads(data) if data else None


def _describe(status: int, raw: bytes) -> str:
    try:
        error = json.loads(raw)["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"
    where = error.get("details", {}).get("path")
    return f"HTTP {status} {error.get('code')}: {error.get('message')}" + (
        f" (at {where})" if where else ""
    )


def _read_file(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    with open(name, "rb") as handle:
        return handle.read()


def run(args: argparse.Namespace) -> int:
    quoted = urllib.parse.quote(getattr(args, "id", "") or "", safe="")
    base = "/api/v1/schedules"
    try:
        if args.action == "list":
            query = {"size": str(args.size)}
            if args.paused:
                query["paused"] = args.paused
            if args.name:
                query["name"] = args.name
            items: list[Any] = []
            while True:
                page = _request(args, "GET", f"{base}?{urllib.parse.urlencode(query)}")
                items.extend(page["items"])
                if not page["has_more"]:
                    break
                query["after"] = page["next_after"]
            result: Any = {"items": items}
        elif args.action == "create":
            body = _read_file(args.file)
            result = _request(args, "POST", base, body)
        elif args.action == "get":
            result = _request(args, "GET", f"{base}/{quoted}")
        elif args.action == "runs":
            result = _request(args, "GET", f"{base}/{quoted}/runs")
        elif args.action in ("pause", "resume"):
            result = _request(args, "POST", f"{base}/{quoted}/{args.action}", b"")
        elif args.action == "trigger":
            headers = {}
            if args.idempotency_key:
                headers["Idempotency-Key"] = args.idempotency_key
            result = _request(args, "POST", f"{base}/{quoted}/trigger", b"", headers)
        else:  # delete
            _request(args, "DELETE", f"{base}/{quoted}")
            result = {"deleted": args.id}
    except (ApiFailure, OSError) as exc:
        print(f"tierq schedules {args.action}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0

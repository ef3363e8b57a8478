"""``tierq schedules ...``: list, get, create, pause, resume, trigger and delete schedules of
a running server, over its HTTP API through the Python client (``--url``, default ``TIERQ_URL`` or
http://127.0.0.1:8080; ``--api-key`` or ``TIERQ_API_KEY``). Output is the API's JSON, one
document per command, so it can be piped into ``jq``; errors go to stderr with the server's
code, message and field path, and a non-zero exit status."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from tierq.cli import remote
from tierq.client import ApiError, TierqError
from tierq.client.calls import Call

DEFAULT_URL = remote.DEFAULT_URL


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


def _request(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """One call through the Python client (its retries and its errors); the answer as JSON."""
    with remote.client(args) as tq:
        return tq.send(Call(method, path, Any, body=body, headers=headers or {}))


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
    except ApiError as exc:
        where = f" (at {exc.path})" if exc.path else ""
        print(
            f"tierq schedules {args.action}: HTTP {exc.status} {exc.code}: {exc.message}{where}",
            file=sys.stderr,
        )
        return remote.REFUSED
    except TierqError as exc:
        print(f"tierq schedules {args.action}: {exc}", file=sys.stderr)
        return remote.UNREACHABLE
    except OSError as exc:  # the --file given cannot be read
        print(f"tierq schedules {args.action}: {exc}", file=sys.stderr)
        return remote.REFUSED
    print(json.dumps(result, indent=2))
    return 0

"""What the commands that talk to a running server share: ``--url`` (``TIERQ_URL``),
``--api-key`` (``TIERQ_API_KEY``), ``--output table|json``, the client they build
(``tierq.client``) and the exit codes.

Exit codes: 0 done; 1 the server refused the call (its code and message on stderr), or the
task waited for ended failed or cancelled; 2 bad usage; 3 the server could not be reached;
4 ``tasks wait`` timed out; 5 ``submit`` left lines not accepted; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec

from tierq.client import ApiError, Client, TransportError

DEFAULT_URL = "http://127.0.0.1:8080"
OK, REFUSED, USAGE, UNREACHABLE, TIMED_OUT, NOT_ACCEPTED, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"server base URL (TIERQ_URL, default {DEFAULT_URL})")
    parser.add_argument("--api-key", help="API key (TIERQ_API_KEY)")
    parser.add_argument(
        "--output", choices=("table", "json"), default="table", help="table (default) or json"
    )


def client(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("TIERQ_URL") or DEFAULT_URL
    key = args.api_key or os.environ.get("TIERQ_API_KEY") or None
    return Client(url, api_key=key)


def plain(value: Any) -> Any:
    """An answer (structs, Raw JSON) as plain JSON values."""
    return msgspec.json.decode(msgspec.json.encode(value))


def emit(args: argparse.Namespace, value: Any, columns: Sequence[str] | None = None) -> None:
    """One answer: JSON (one document), or a table of ``columns`` for lists and a
    field/value table for one object."""
    data = plain(value)
    if args.output == "json":
        print(json.dumps(data, indent=None if isinstance(data, list) else 2))
        return
    if isinstance(data, list):
        table(data, columns or (sorted(data[0]) if data else []))
    else:
        width = max((len(k) for k in data), default=0)
        for key, item in data.items():
            shown = item if isinstance(item, str) else json.dumps(item)
            print(f"{key:{width}}  {shown}")


def table(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    rows = list(rows)
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return value if isinstance(value, str) else json.dumps(value)


def guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Errors become a message on stderr and an exit code, never a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ApiError as exc:
            where = f" at {exc.path}" if exc.path else ""
            print(f"tierq: {exc.status} {exc.code}: {exc.message}{where}", file=sys.stderr)
            return REFUSED
        except TransportError as exc:
            print(f"tierq: cannot reach the server: {exc}", file=sys.stderr)
            return UNREACHABLE
        except KeyboardInterrupt:
            return INTERRUPTED
        except BrokenPipeError:
            # The reader went away (piped into head): stop quietly; the interpreter's last
            # flush must not fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return OK

    return run

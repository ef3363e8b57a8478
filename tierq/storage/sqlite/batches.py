"""Multi-row statements: one ``sqlite3_step`` per chunk of rows, not one per row.

``executemany`` steps once per row, and sqlite3 releases the GIL around every step, so every
row costs the writer thread a GIL hand-back from the event loop's thread, which is slow while
the loop is busy (loadtest/bench_sqlite_store.py --busy measures it). A statement whose
``VALUES`` list holds many rows is one step, and it is also faster than ``executemany`` with
an idle loop (BENCHMARKS.md, "multi-row statements").

A statement file marks where the rows go with ``{rows}``; only groups of ``?`` are put
there, never values. Row counts are cut into chunks of fixed sizes (``CHUNK``, then powers of
two for the rest), so each statement is prepared in at most nine shapes, all of which stay in
the connection's statement cache; a chunk's parameters stay far below SQLite's limit of
32,766 (25 columns x 256 rows = 6,400).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

CHUNK = 256
ROWS = "{rows}"


def chunk_sizes(n: int) -> list[int]:
    """``n`` as full chunks, then the powers of two of the remainder (largest first)."""
    sizes = [CHUNK] * (n // CHUNK)
    rest = n % CHUNK
    bit = CHUNK >> 1
    while rest:
        if rest >= bit:
            sizes.append(bit)
            rest -= bit
        bit >>= 1
    return sizes


@functools.lru_cache(maxsize=128)
def _statement(template: str, width: int, count: int) -> str:
    # Comment lines dropped: they may name the marker too, and a shorter text parses faster.
    body = "\n".join(line for line in template.splitlines() if not line.lstrip().startswith("--"))
    if body.count(ROWS) != 1:
        raise ValueError(f"a multi-row statement needs exactly one {ROWS}: {body[:80]!r}")
    group = "(" + ", ".join("?" * width) + ")"
    return body.replace(ROWS, ", ".join([group] * count))


def execute_rows(
    conn: sqlite3.Connection, template: str, width: int, rows: Sequence[Sequence[Any]]
) -> int:
    """Run ``template`` over ``rows`` (each ``width`` parameters), in order, chunk by chunk;
    return the number of rows the statements changed."""
    changed = 0
    start = 0
    for size in chunk_sizes(len(rows)):
        params = list(chain.from_iterable(rows[start : start + size]))
        changed += conn.execute(_statement(template, width, size), params).rowcount
        start += size
    return changed

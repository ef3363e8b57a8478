"""How much event-loop CPU a PostgreSQL batch write costs the client, per statement.

asyncpg encodes parameters synchronously on the calling thread (the event loop) before the
query is sent; that time is what every other request on the loop waits. This measures it as
the process CPU time spent inside the ``fetch`` call (the server's work is in another
process), plus the call's wall time, for a 1,000-task insert and an 8,000-transition write.

    .venv/bin/python loadtest/bench_pg_encoding.py
    # against an older checkout's codecs and SQL, side by side:
    git worktree add /tmp/tierq-old 142d0c3
    .venv/bin/python loadtest/bench_pg_encoding.py --old-tree /tmp/tierq-old

The old tree must have ``task_columns`` / ``transition_columns`` (twelve and 23 arrays);
the current one builds one JSON document per batch.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import record_task  # noqa: E402
from tierq.model import Outcome, TaskState, Transition  # noqa: E402
from tierq.storage.postgres import codecs  # noqa: E402

Build = Callable[[Sequence[Any]], list[Any]]


def load_old(tree: Path) -> tuple[Any, str, str]:
    spec = importlib.util.spec_from_file_location(
        "old_codecs", tree / "tierq/storage/postgres/codecs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sql = tree / "tierq/storage/postgres/sql"
    return module, (sql / "task_insert.sql").read_text(), (sql / "task_transition.sql").read_text()


async def measure(
    conn: asyncpg.Connection, sql: str, build: Build, items: Callable[[], list[Any]]
) -> tuple[float, float]:
    cpu, wall = [], []
    for _ in range(8):
        args = build(items())
        c0, w0 = time.process_time(), time.perf_counter()
        await conn.fetch(sql, *args)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu) * 1000, min(wall) * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--old-tree", type=Path)
    args = parser.parse_args()
    sql_dir = ROOT / "tierq/storage/postgres/sql"
    variants: list[tuple[str, str, Build, str, Build]] = [
        (
            "current",
            (sql_dir / "task_insert.sql").read_text(),
            lambda ts: [codecs.task_document(ts)],
            (sql_dir / "task_transition.sql").read_text(),
            lambda trs: [codecs.transition_document(trs)],
        )
    ]
    if args.old_tree:
        old, old_insert, old_transition = load_old(args.old_tree)
        variants.insert(
            0, ("old tree", old_insert, old.task_columns, old_transition, old.transition_columns)
        )
    schema = f"bench_enc_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(args.postgres_url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}; SET search_path TO {schema}")
        await conn.execute((ROOT / "tierq/storage/postgres/migrations/001_init.sql").read_text())
        await codecs.init_connection(conn)
        now = time.time()
        for name, insert_sql, build_insert, transition_sql, build_transition in variants:
            inserted: list[Any] = []

            def tasks(batch: list[Any] = inserted) -> list[Any]:
                made = [record_task() for _ in range(1000)]
                batch.extend(made)
                return made

            i_cpu, i_wall = await measure(conn, insert_sql, build_insert, tasks)
            ids = [t.id for t in inserted]

            def transitions(ids: list[str] = ids) -> list[Any]:
                return [
                    Transition(
                        ids[i % len(ids)], 1, TaskState.SUCCEEDED, now, started_at=now - 0.01,
                        finished_at=now, worker="bench/w1", outcome=Outcome.SUCCEEDED,
                    )
                    for i in range(8000)
                ]  # fmt: skip

            t_cpu, t_wall = await measure(conn, transition_sql, build_transition, transitions)
            print(
                f"{name:9s} insert of 1,000: loop CPU {i_cpu:6.2f} ms, wall {i_wall:6.1f} ms | "
                f"8,000 transitions: loop CPU {t_cpu:6.2f} ms, wall {t_wall:6.1f} ms"
            )
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())

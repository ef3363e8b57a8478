r"""Conversions between tierq's Python values and PostgreSQL columns.

Codecs are set on every pooled connection so values cross the wire without detours:
- timestamptz <-> float epoch seconds, through asyncpg's "tuple" format (microseconds since
  2000-01-01): no datetime objects and no ``to_timestamp()``/``extract()`` in SQL.
- json / jsonb <-> JSON bytes in binary format (json's wire format is the text, jsonb's a
  version byte then the text), so JSON passes through without being parsed in Python.
  ``payload`` is a json column and reads back byte for byte; ``result`` and ``notify`` are
  jsonb, which PostgreSQL normalises (equivalent JSON, not necessarily the same bytes).
- uuid <-> str in text format, so ids stay the strings the engine uses.

PostgreSQL stores no NUL character: a text value holding "\x00" and a jsonb value holding the
escape ``\u0000`` are refused (DataError), and a refused row would hold up its whole batch.
Handler output can contain one (decoded bytes, shell output, exception messages), so every
value written here is made storable: NUL in text becomes U+FFFD, ``\u0000`` in jsonb becomes
``\ufffd``. ``payload`` (json) keeps ``\u0000`` as given: json stores its text unparsed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from tierq.model import Execution, Outcome, Task, TaskState, Transition
from tierq.storage.base import StoreDataError
from tierq.storage.text import without_nul

# Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC).
_PG_EPOCH_US = 946_684_800_000_000
_JSONB_VERSION = b"\x01"
_STATES: dict[str, TaskState] = {s.value: s for s in TaskState}
_OUTCOMES: dict[str, Outcome] = {o.value: o for o in Outcome}
# ``\u0000`` as a JSON escape: preceded by an even number of backslashes (``\\u0000`` is an
# escaped backslash followed by the letters "u0000", which must stay as they are).
_JSON_NUL = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def storable_text(value: str | None) -> str | None:
    """``value`` with every NUL replaced (text columns refuse NUL; see storage/text.py)."""
    return None if value is None else without_nul(value)


def storable_jsonb(data: bytes) -> bytes:
    r"""JSON ``data`` with every ``\u0000`` escape replaced by ``\ufffd`` (jsonb refuses it)."""
    if b"\\u0000" not in data:
        return data
    return _JSON_NUL.sub(rb"\1\\ufffd", data)


def _ts_encode(seconds: float) -> tuple[int]:
    return (round(seconds * 1_000_000) - _PG_EPOCH_US,)


def _ts_decode(value: tuple[int]) -> float:
    # Integer microseconds since the Unix epoch divided once: the nearest float, so a time
    # with microsecond precision reads back equal to the float that was written.
    return (value[0] + _PG_EPOCH_US) / 1_000_000


def _jsonb_encode(data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    return _JSONB_VERSION + storable_jsonb(data)


def _jsonb_decode(data: bytes) -> bytes:
    return data[1:]


def _json_encode(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


def _json_decode(data: bytes) -> bytes:
    return data


async def init_connection(conn: asyncpg.Connection) -> None:
    """Pool ``init`` hook: runs once per new connection."""
    await conn.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=_ts_encode,
        decoder=_ts_decode,
        format="tuple",
    )
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_jsonb_encode,
        decoder=_jsonb_decode,
        format="binary",
    )
    await conn.set_type_codec(
        "json",
        schema="pg_catalog",
        encoder=_json_encode,
        decoder=_json_decode,
        format="binary",
    )
    await conn.set_type_codec("uuid", schema="pg_catalog", encoder=str, decoder=str, format="text")


def task_from_row(r: Any) -> Task:
    """A row whose columns follow the Task field order (see sql/task_get_many.sql)."""
    return Task(
        r[0],
        r[1],
        r[2],
        r[3],
        r[4],
        _STATES[r[5]],
        r[6],
        r[7],
        r[8],
        r[9],
        r[10],
        r[11],
        r[12],
        r[13],
        r[14],
        r[15],
        tuple(r[16]),
        r[17],
        r[18],
        r[19],
        r[20],
        r[21],
        r[22],
        r[23],
        r[24],
        r[25],
        r[26],
        r[27],
        r[28],
    )


def execution_from_row(r: Any) -> Execution:
    outcome = r[4]
    return Execution(r[0], r[1], r[2], r[3], _OUTCOMES[outcome] if outcome else None, r[5], r[6])


def _json_text(data: bytes | None) -> str | None:
    return None if data is None else data.decode()


def task_document(tasks: Sequence[Task]) -> bytes:
    """The one parameter of sql/task_insert.sql: the batch as a JSON array of objects, for
    the same reason as ``transition_document`` (23 arrays were encoded on the event loop).
    JSON columns travel as strings holding their text: ``payload`` is stored byte for byte
    (json), ``notify`` and ``result`` made storable for jsonb first.
    Raises StoreDataError for a value no document can carry (a lone surrogate, bytes that
    are not UTF-8)."""
    us = pg_microseconds
    try:
        rows = [
            {
                "id": t.id,
                "type": storable_text(t.type),
                "queue": storable_text(t.queue),
                "priority": t.priority,
                "payload": t.payload.decode(),
                "state": t.state,
                "run_at": us(t.run_at),
                "created_at": us(t.created_at),
                "updated_at": us(t.updated_at),
                "max_retries": t.max_retries,
                "timeout_s": t.timeout_s,
                "attempt": t.attempt,
                "attempt_base": t.attempt_base,
                "name": storable_text(t.name),
                "description": storable_text(t.description),
                "idempotency_key": storable_text(t.idempotency_key),
                "depends_on": ",".join(t.depends_on) if t.depends_on else None,
                "notify": _json_text(None if t.notify is None else storable_jsonb(t.notify)),
                "result": _json_text(None if t.result is None else storable_jsonb(t.result)),
                "last_error": storable_text(t.last_error),
                "started_at": us(t.started_at),
                "finished_at": us(t.finished_at),
                "lease_owner": storable_text(t.lease_owner),
                "schedule_id": t.schedule_id,
                "scheduled_for": us(t.scheduled_for),
                "tenant": t.tenant,
                "breaker": storable_text(t.breaker),
                "request_id": storable_text(t.request_id),
                "traceparent": storable_text(t.traceparent),
            }
            for t in tasks
        ]
        return orjson.dumps(rows)
    except (orjson.JSONEncodeError, UnicodeDecodeError) as exc:
        raise StoreDataError(f"a task cannot be stored: {exc}") from exc


def pg_microseconds(seconds: float | None) -> int | None:
    """Epoch seconds as integer microseconds since PostgreSQL's epoch: the same rounding as
    the timestamptz codec, and exact once added to the epoch in SQL (see task_transition)."""
    return None if seconds is None else round(seconds * 1_000_000) - _PG_EPOCH_US


def transition_document(transitions: Sequence[Transition]) -> bytes:
    """The one parameter of sql/task_transition.sql: the batch as a JSON array of objects.

    Why not twelve arrays: asyncpg encodes array elements on the event loop, through a
    Python call per timestamp, and a large flush held the loop for tens of milliseconds. This
    document is built by one C call (in a worker thread for large batches) and crosses the
    loop as a single bytes value. ``result`` travels as a JSON string holding the JSON, so
    JSON ``null`` stays a value and only a missing result is SQL NULL, as before.
    Raises StoreDataError for a value no document can carry (a lone surrogate)."""
    rows = [
        {
            "id": t.task_id,
            "attempt": t.attempt,
            "state": t.state,
            "at": pg_microseconds(t.at),
            "run_at": pg_microseconds(t.run_at),
            "started_at": pg_microseconds(t.started_at),
            "finished_at": pg_microseconds(t.finished_at),
            "result": None if t.result is None else storable_jsonb(t.result).decode(),
            "error": storable_text(t.error),
            "lease_owner": storable_text(t.lease_owner),
            "worker": storable_text(t.worker),
            "outcome": t.outcome,
        }
        for t in transitions
    ]
    try:
        return orjson.dumps(rows)
    except (orjson.JSONEncodeError, UnicodeDecodeError) as exc:
        raise StoreDataError(f"a transition cannot be stored: {exc}") from exc

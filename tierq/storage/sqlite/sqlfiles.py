"""SQL text of the SQLite backend, read once at import from ``sql/*.sql``.

A file is one statement, or (``-- name: x`` lines) a set of named fragments.
"""

from __future__ import annotations

import sqlite3
from importlib import resources

from tierq.storage.migrations import Migration, discover

_SQL = resources.files("tierq.storage.sqlite") / "sql"
_MIGRATIONS = discover("tierq.storage.sqlite")


def load(name: str) -> str:
    return (_SQL / f"{name}.sql").read_text(encoding="utf-8")


def load_sections(name: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in load(name).splitlines():
        if line.startswith("-- name:"):
            current = sections.setdefault(line.split(":", 1)[1].strip(), [])
        elif current is not None and not line.startswith("--"):
            current.append(line)
    return {key: "\n".join(lines).strip() for key, lines in sections.items()}


def migrations() -> tuple[Migration, ...]:
    """Every ``migrations/NNN_name.sql`` of this backend, in version order."""
    return _MIGRATIONS


def statements(script: str) -> list[str]:
    """Split a migration into statements (trigger bodies hold ';', so split on complete
    statements, line by line; a statement must end at the end of a line)."""
    out: list[str] = []
    buf: list[str] = []
    for line in script.splitlines():
        buf.append(line)
        text = "\n".join(buf)
        if sqlite3.complete_statement(text):
            stmt = text.strip()
            if stmt.rstrip(";").strip() and not _only_comments(stmt):
                out.append(stmt)
            buf = []
    rest = "\n".join(buf).strip()
    if rest and not _only_comments(rest):
        raise ValueError(f"incomplete statement at end of migration: {rest[:80]!r}")
    return out


def _only_comments(text: str) -> bool:
    return all(not ln.strip() or ln.strip().startswith("--") for ln in text.splitlines())

"""Numbered schema migrations, as every SQL record store finds and applies them.

A backend keeps its migrations as ``migrations/NNN_name.sql`` in its package. ``discover``
reads them in version order (a duplicate number fails the import, not a start-up);
``pending`` says which of them a database has not recorded yet. Applying them is the
backend's own (SQLite: inside its writer's transaction; PostgreSQL: under an advisory lock),
each migration and its record in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def discover(package: str) -> tuple[Migration, ...]:
    """Every ``migrations/NNN_name.sql`` of ``package``, in version order."""
    found = []
    for entry in (resources.files(package) / "migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {package}: {versions}")
    if not found:
        raise RuntimeError(f"no migrations found in {package}")
    return tuple(found)


def pending(available: Iterable[Migration], applied: Iterable[int]) -> list[Migration]:
    """The migrations not applied yet, in version order."""
    done = set(applied)
    return [m for m in available if m.version not in done]

"""Text as every record store keeps it.

Neither record store keeps a NUL character in text: PostgreSQL's text columns refuse it, and
SQLite's JSON functions (through which its batches travel) end a string at an escaped NUL.
Both replace it with U+FFFD, the same way, so a task reads back the same from either.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


def without_nul(text: str) -> str:
    """``text`` with every NUL replaced by U+FFFD."""
    if "\x00" not in text:
        return text
    return text.replace("\x00", REPLACEMENT)

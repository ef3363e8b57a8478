"""Id checks at the store boundary: a string that is not a UUID can name no stored task."""

from __future__ import annotations

import re
from collections.abc import Sequence

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def valid_ids(ids: Sequence[str]) -> dict[str, str]:
    """Canonical (lower-case) id -> the id as given, for the ids that are UUIDs, in order."""
    match = _UUID.fullmatch
    return {i.lower(): i for i in ids if match(i)}

"""Small checks shared by the built-in handlers' payload validators.

Every failure is a ``PayloadError`` whose path names the field (``payload.sleep_ms``), so the
API can answer 422 pointing at exactly what was wrong. Unknown fields are errors: a typo in a
field name must not silently fall back to a default.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from tierq.engine.handlers.base import PayloadError


def obj(payload: Any, fields: Collection[str], *, allow_null: bool = False) -> dict[str, Any]:
    if payload is None and allow_null:
        return {}
    if not isinstance(payload, dict):
        raise PayloadError("payload", "must be an object")
    for key in payload:
        if key not in fields:
            raise PayloadError(f"payload.{key}", "unknown field")
    return payload


def non_negative_int(payload: dict[str, Any], key: str, default: int = 0) -> int:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PayloadError(f"payload.{key}", "must be an integer >= 0")
    return value


def boolean(payload: dict[str, Any], key: str, default: bool = False) -> bool:
    value = payload.get(key, default)
    if not isinstance(value, bool):
        raise PayloadError(f"payload.{key}", "must be true or false")
    return value


def positive_number(payload: dict[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise PayloadError(f"payload.{key}", "must be a number > 0")
    if value == float("inf"):
        raise PayloadError(f"payload.{key}", "must be finite")
    return float(value)


def string(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise PayloadError(f"payload.{key}", "must be a non-empty string")
    return value


def str_map(
    payload: dict[str, Any], key: str, *, key_forbid: str = "", value_forbid: str = ""
) -> dict[str, str]:
    """An object of string values; the ``*_forbid`` characters (and NUL) are refused."""
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"payload.{key}", "must be an object of strings")
    for k, v in value.items():
        path = f"payload.{key}.{k}"
        if not isinstance(v, str):
            raise PayloadError(path, "must be a string")
        bad_key = any(c in k for c in key_forbid + "\x00")
        if not k or bad_key or any(c in v for c in value_forbid + "\x00"):
            raise PayloadError(path, "contains a character that is not allowed")
    return value

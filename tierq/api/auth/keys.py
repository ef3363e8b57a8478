"""The API key format: ``tq_live_<32 base62 characters>_<crc32 as 6 base62 characters>``.

Every key starts with ``tq_`` so secret scanners recognise one, and its checksum lets a typo
or a random string be refused without a database lookup. The random part carries 190 bits,
so the stored SHA-256 of the whole key cannot be reversed by guessing (no salt or slow hash
needed: nobody chooses these secrets).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import zlib

PREFIX = "tq_live_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_LEN = 32
_CHECK_LEN = 6
_SHAPE = re.compile(rf"tq_live_[0-9A-Za-z]{{{_RANDOM_LEN}}}_[0-9A-Za-z]{{{_CHECK_LEN}}}")
# Characters of a key shown in listings (never enough to use it).
DISPLAY_LEN = len(PREFIX) + 4


def _base62(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECK_LEN)


def generate() -> str:
    body = PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LEN))
    return f"{body}_{_checksum(body)}"


def well_formed(key: str) -> bool:
    """The shape and checksum of a tierq key (no lookup)."""
    if not _SHAPE.fullmatch(key):
        return False
    body, check = key[: -_CHECK_LEN - 1], key[-_CHECK_LEN:]
    return secrets.compare_digest(_checksum(body), check)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display(key: str) -> str:
    return key[:DISPLAY_LEN]

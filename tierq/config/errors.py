"""What a setting that cannot be used raises, and the names of the variables."""

from __future__ import annotations

ENV_PREFIX = "TIERQ_"
TEST_PREFIX = "TIERQ_TEST_"


class ConfigError(ValueError):
    """A setting is unknown or malformed. The message names it."""


def check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: {message}")

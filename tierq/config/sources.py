"""Where settings come from, in order: defaults, a settings file (``file.py``), ``TIERQ_*``
variables, then flags; and the example file listing every setting."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from tierq.config.errors import ENV_PREFIX, TEST_PREFIX
from tierq.config.file import example as _example
from tierq.config.file import load as load_file
from tierq.config.settings import FIELDS, Settings, from_mapping


def from_env(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    config: str | None = None,
) -> Settings:
    """Defaults, then the ``config`` file, then ``TIERQ_*`` variables, then ``overrides``
    (command-line flags)."""
    return from_sources(environ, overrides, config)[0]


def from_sources(
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    config: str | None = None,
) -> tuple[Settings, dict[str, str]]:
    """As ``from_env``, and where each setting that is not a default came from (a file's
    ``path:line``, the variable's name, or ``flag``)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config:
        found, lines = load_file(config, FIELDS)
        values.update(found)
        sources.update({key: f"{config}:{lines[key]}" for key in found})
    for key, value in env.items():
        # TIERQ_TEST_* is the test suite's namespace (service URLs), never a server setting.
        if key.startswith(ENV_PREFIX) and not key.startswith(TEST_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            values[name] = value
            sources[name] = key
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            sources[key] = "flag"
    return from_mapping(values), sources


def example_file() -> str:
    """A settings file listing every setting with its documentation and default."""
    return _example(fields(Settings))

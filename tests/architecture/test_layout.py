"""The layout rules that the import contracts (pyproject.toml, ``lint-imports``) cannot say."""

from __future__ import annotations

from pathlib import Path

import tierq

PACKAGE = Path(tierq.__file__).parent
MAX_LINES = 600


def test_no_module_is_over_the_line_limit() -> None:
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert len(sizes) > 40  # the walk found the package
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert too_long == {}


def test_engine_and_storage_do_not_reach_up() -> None:
    """Belt and braces beside the layers contract: no engine or storage module names the API
    or the CLI, even under TYPE_CHECKING or in a string import."""
    offenders = []
    for layer in ("engine", "storage"):
        for path in (PACKAGE / layer).rglob("*.py"):
            text = path.read_text()
            if "tierq.api" in text or "tierq.cli" in text:
                offenders.append(str(path.relative_to(PACKAGE)))
    assert offenders == []

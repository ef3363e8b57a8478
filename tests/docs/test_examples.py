"""The documentation's examples run: every ```python block of each page under docs/, in
order, in one namespace per page, against a fresh live server (embedded). And every link of
the docs and the README points at a file of the repository."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.system.cluster import EmbeddedServer

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md"))
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def blocks(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    live = EmbeddedServer(tmp_path / "docs.db", tmp_path / "server.log")
    live.start()
    try:
        yield live
    finally:
        live.kill()


def test_every_feature_area_has_a_page_with_examples() -> None:
    names = {p.stem for p in PAGES}
    assert {"submitting", "schedules", "events", "security", "operations", "deployment"} <= names
    for page in PAGES:
        if page.stem != "architecture":
            assert blocks(page), f"{page.name} has no Python example"


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p)], ids=lambda p: p.stem)
async def test_the_examples_of_a_page_run(
    page: Path, server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with aiohttp.ClientSession() as session:
        await server.wait_ready(session)
    monkeypatch.setenv("TIERQ_URL", server.base)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem}"}
    for number, code in enumerate(blocks(page), 1):
        try:
            # The examples are blocking code (the sync client): run off the event loop.
            compiled = compile(code, f"{page.name} block {number}", "exec")
            await _in_thread(compiled, namespace)
        except Exception as exc:
            raise AssertionError(f"{page.name}, example {number} failed: {exc!r}") from exc


async def _in_thread(compiled: object, namespace: dict[str, object]) -> None:
    import asyncio

    await asyncio.to_thread(exec, compiled, namespace)


def test_links_point_inside_the_repository() -> None:
    for page in [ROOT / "README.md", ROOT / "BENCHMARKS.md", *PAGES]:
        for target in _LINK.findall(page.read_text()):
            if target.startswith("#"):
                continue
            assert not target.startswith(("http://", "https://", "../")), (page.name, target)
            path = (page.parent / target.split("#")[0]).resolve()
            assert path.exists() and ROOT in path.parents, (page.name, target)

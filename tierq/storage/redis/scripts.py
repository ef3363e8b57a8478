"""The Lua scripts of the dispatch tier, read from ``lua/*.lua`` at import.

``_lib.lua`` is prepended to each script (Redis scripts cannot import one another), and a
family's helpers (``_breaker.lua``) to that family's scripts (``breaker_*.lua``). Scripts
are loaded with SCRIPT LOAD in ``RedisDispatch.open()`` and run with EVALSHA; the SHA is
computed here, so a pipeline can queue EVALSHA without the SCRIPT EXISTS round trip that
redis-py's pipelined ``Script`` objects add to every execute.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class LuaScript:
    name: str
    source: str
    sha: str


def _load() -> dict[str, LuaScript]:
    folder = resources.files("tierq.storage.redis").joinpath("lua")
    lib = folder.joinpath("_lib.lua").read_text(encoding="utf-8")
    scripts: dict[str, LuaScript] = {}
    for entry in folder.iterdir():
        name = entry.name
        if not name.endswith(".lua") or name.startswith("_"):
            continue
        # A family's own helpers (``_breaker.lua`` for ``breaker_*.lua``) come after the lib.
        family = folder.joinpath("_" + name.split("_")[0] + ".lua")
        extra = (
            family.read_text(encoding="utf-8") + "\n" if "_" in name and family.is_file() else ""
        )
        source = lib + "\n" + extra + entry.read_text(encoding="utf-8")
        sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
        scripts[name.removesuffix(".lua")] = LuaScript(name.removesuffix(".lua"), source, sha)
    return scripts


SCRIPTS: dict[str, LuaScript] = _load()

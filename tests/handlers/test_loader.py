from __future__ import annotations

import sys
import textwrap
import threading
import uuid

import pytest

import tierq
from tierq.config import ConfigError, Settings
from tierq.engine.handlers import build_registry, close_registry
from tierq.engine.handlers.base import HandlerRegistry, PayloadError
from tierq.engine.handlers.loader import load_user_handlers

MODULE = """
import threading

import tierq
from tierq.engine.handlers.base import PayloadError


def check(payload):
    if not isinstance(payload.get("n"), int):
        raise PayloadError("payload.n", "must be an integer")


@tierq.handler("{prefix}_async", validate=check)
async def double(ctx):
    return ctx.payload["n"] * 2


@tierq.handler("{prefix}_sync")
def where(ctx):
    return threading.current_thread().name
"""


@pytest.fixture
def module_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def write(source: str) -> str:
        name = f"user_mod_{uuid.uuid4().hex[:10]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        created.append(name)
        return name

    yield write
    for name in created:
        sys.modules.pop(name, None)


def test_decorator_is_exported():
    assert tierq.handler is tierq.engine.handlers.loader.handler
    assert "handler" in tierq.__all__


async def test_sync_and_async_handlers(module_dir, make_ctx):
    name = module_dir(MODULE.replace("{prefix}", "u1"))
    registry = build_registry(Settings(handlers=(name,)))
    try:
        assert {"u1_async", "u1_sync"} <= set(registry.names())
        h = registry.get("u1_async")
        assert await h.run(make_ctx("u1_async", {"n": 21})) == 42
        with pytest.raises(PayloadError) as info:
            h.validate({"n": "x"})
        assert info.value.path == "payload.n"
        thread = await registry.get("u1_sync").run(make_ctx("u1_sync", {}))
        assert thread != threading.current_thread().name  # ran in a worker thread
    finally:
        await close_registry(registry)


def test_second_registry_gets_the_same_handlers(module_dir):
    name = module_dir(MODULE.replace("{prefix}", "u2"))
    first = HandlerRegistry()
    load_user_handlers(first, [name])
    second = HandlerRegistry()
    load_user_handlers(second, [name])  # module already imported: not executed again
    assert first.names() == second.names() == ["u2_async", "u2_sync"]


def test_register_function(module_dir):
    name = module_dir(
        """
        def register(registry):
            registry.register("via_register", lambda ctx: "ok")
        """
    )
    registry = HandlerRegistry()
    load_user_handlers(registry, [name])
    assert registry.names() == ["via_register"]


def test_duplicate_name_is_an_error(module_dir):
    first = module_dir(MODULE.replace("{prefix}", "u3"))
    second = module_dir(MODULE.replace("{prefix}", "u3"))
    with pytest.raises(ConfigError, match="'u3_async' is registered twice") as info:
        load_user_handlers(HandlerRegistry(), [first, second])
    assert second in str(info.value)


@pytest.mark.parametrize("builtin", ["noop", "dummy", "http", "shell"])
def test_builtin_name_clash(module_dir, builtin):
    name = module_dir(
        f"""
        import tierq

        @tierq.handler("{builtin}")
        async def mine(ctx):
            return None
        """
    )
    with pytest.raises(ConfigError, match="clashes with a built-in"):
        build_registry(Settings(handlers=(name,)))


def test_register_function_builtin_clash(module_dir):
    name = module_dir(
        """
        def register(registry):
            registry.register("shell", lambda ctx: None)
        """
    )
    with pytest.raises(ConfigError, match="'shell' clashes with a built-in"):
        build_registry(Settings(handlers=(name,)))


@pytest.mark.parametrize("bad", ["no_such_module_tierq_x", ".relative", "a..b"])
def test_bad_module_name(bad):
    with pytest.raises(ConfigError, match="TIERQ_HANDLERS") as info:
        load_user_handlers(HandlerRegistry(), [bad])
    assert repr(bad) in str(info.value)


def test_module_raising_at_import(module_dir):
    name = module_dir(
        """
        import tierq

        @tierq.handler("half_done")
        async def h(ctx):
            return None

        raise RuntimeError("boom at import")
        """
    )
    with pytest.raises(ConfigError, match="RuntimeError: boom at import"):
        load_user_handlers(HandlerRegistry(), [name])
    # Its declaration does not leak into the next module loaded.
    other = module_dir("X = 1\n")
    registry = HandlerRegistry()
    load_user_handlers(registry, [other])
    assert registry.names() == []


def test_decorator_rejects_bad_names():
    with pytest.raises(ValueError):
        tierq.handler("")
    with pytest.raises(ValueError):
        tierq.handler(" padded ")

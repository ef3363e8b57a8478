"""Task types: the built-ins (noop, dummy, http, shell) and user handler modules.

``build_registry`` is the one place that decides which types exist: ``shell`` is registered
only when ``Settings.shell_allow`` names a usable executable, so a submission of type shell is
rejected as an unknown type otherwise. ``close_registry`` releases what handlers hold (the http
type's client session); the engine calls it on shutdown.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable

from tierq.config import Settings
from tierq.engine.handlers.base import Handler, HandlerRegistry
from tierq.engine.handlers.builtin import register_builtins
from tierq.engine.handlers.external import TYPE, ExternalWork
from tierq.engine.handlers.http import HttpHandler
from tierq.engine.handlers.loader import handler, load_user_handlers
from tierq.engine.handlers.shell import ShellHandler

# HandlerRegistry is a fixed contract without a place for resources, so what must be closed
# is kept beside it, dying with it.
_closers: weakref.WeakKeyDictionary[HandlerRegistry, list[Callable[[], Awaitable[None]]]] = (
    weakref.WeakKeyDictionary()
)


def build_registry(settings: Settings) -> HandlerRegistry:
    registry = HandlerRegistry()
    register_builtins(registry)
    registry.external = external = ExternalWork()
    registry.add(Handler(name=TYPE, run=external.run))
    http = HttpHandler(settings)
    registry.add(Handler(name="http", run=http.run, validate=http.validate))
    _closers[registry] = [http.close]
    shell = ShellHandler(settings)
    if shell.enabled:
        registry.add(Handler(name="shell", run=shell.run, validate=shell.validate))
    load_user_handlers(registry, settings.handlers)
    return registry


async def close_registry(registry: HandlerRegistry) -> None:
    for close in _closers.pop(registry, []):
        await close()


__all__ = ["build_registry", "close_registry", "handler", "load_user_handlers"]

"""User handlers: modules named in ``Settings.handlers`` (``TIERQ_HANDLERS``).

A module registers handlers either with the decorator::

    import tierq

    @tierq.handler("resize_image", validate=check_payload)
    async def resize(ctx): ...

or by defining ``register(registry: HandlerRegistry) -> None``. Async functions run as they
are; plain functions run in a worker thread (``as_async``).

The decorator only records (importing a module must not need a registry); ``load_user_handlers``
imports each module and takes what it recorded. Declarations are remembered per module, so a
second registry built in the same process (tests, a restarted app) gets the same handlers even
though Python does not execute the module twice.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from tierq.config import ConfigError
from tierq.engine.handlers.base import HandlerRegistry, Validator

# Reserved even when their handler is not registered (shell while disabled): a user handler
# named "shell" must not quietly take over tasks meant for the built-in.
BUILTIN_NAMES = frozenset({"noop", "dummy", "http", "shell"})

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Declaration:
    name: str
    fn: Callable[..., Any]
    validate: Validator | None


_pending: list[Declaration] = []
_by_module: dict[str, list[Declaration]] = {}


def handler(name: str, validate: Validator | None = None) -> Callable[[F], F]:
    """Declare ``fn`` as the handler of task type ``name`` (registered when its module is
    listed in ``TIERQ_HANDLERS``). ``validate(payload)`` raises ``PayloadError`` at submit."""
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"handler name must be a non-empty string without spaces: {name!r}")
    if validate is not None and not callable(validate):
        raise TypeError("validate must be callable")

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@handler({name!r}) must decorate a function")
        _pending.append(Declaration(name, fn, validate))
        return fn

    return decorate


def _error(module: str, message: str) -> ConfigError:
    return ConfigError(f"TIERQ_HANDLERS: module {module!r}: {message}")


def _import(module_path: str) -> Any:
    if not module_path or module_path.startswith("."):
        raise _error(module_path, "must be an absolute import path (package.module)")
    try:
        return importlib.import_module(module_path)
    except Exception as exc:  # any failure at import time is a configuration error
        _pending.clear()  # half-run module: its declarations must not go to the next one
        raise _error(module_path, f"cannot import: {type(exc).__name__}: {exc}") from exc


def _add(registry: HandlerRegistry, module_path: str, decl: Declaration) -> None:
    if decl.name in BUILTIN_NAMES:
        raise _error(module_path, f"handler {decl.name!r} clashes with a built-in task type")
    if decl.name in registry:
        raise _error(module_path, f"handler {decl.name!r} is registered twice")
    registry.register(decl.name, decl.fn, validate=decl.validate)


def load_user_handlers(registry: HandlerRegistry, module_paths: Iterable[str]) -> None:
    """Import every module and register its handlers; any problem is a ``ConfigError``
    naming the module (start-up must stop, not run without a handler)."""
    for module_path in module_paths:
        module = _import(module_path)
        if module_path not in _by_module:
            # Everything decorated since the last load belongs to this module (or to modules
            # it imported), including decorations run by an import before this call.
            _by_module[module_path] = list(_pending)
            _pending.clear()
        for decl in _by_module[module_path]:
            _add(registry, module_path, decl)
        register = getattr(module, "register", None)
        if register is None:
            continue
        if not callable(register):
            raise _error(module_path, "'register' is not a function")
        before = set(registry.names())
        try:
            register(registry)
        except ValueError as exc:  # HandlerRegistry.add: a name registered twice
            raise _error(module_path, f"register() failed: {exc}") from exc
        except Exception as exc:
            raise _error(module_path, f"register() failed: {type(exc).__name__}: {exc}") from exc
        clashes = sorted((set(registry.names()) - before) & BUILTIN_NAMES)
        if clashes:
            raise _error(module_path, f"handler {clashes[0]!r} clashes with a built-in task type")

"""Errors the engine raises for the API to map to 4xx answers, and what a submission returns."""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from tierq.model import Task, TaskState


class EngineError(Exception):
    """Base of the errors the API maps to 4xx answers."""


class NotFound(EngineError):
    pass


class Conflict(EngineError):
    """The task's state does not allow the operation."""

    def __init__(self, message: str, state: TaskState) -> None:
        super().__init__(message)
        self.state = state


class FieldError(EngineError):
    """A request field is wrong; ``path`` is its JSON path, e.g. ``$[3].priority``."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{message} - at `{path}`")
        self.path = path
        self.message = message


class AlreadyExists(EngineError):
    """A unique field (``path``) already holds this value (a schedule name, say)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path


_PATH_RE = re.compile(r" - at `([^`]*)`$")
_UNKNOWN_RE = re.compile(r"Object contains unknown field `([A-Za-z0-9_]{1,64})`")


def field_error(exc: msgspec.ValidationError) -> FieldError:
    """msgspec's refusal as a FieldError with the path of the field at fault."""
    text = str(exc)
    match = _PATH_RE.search(text)
    path = match.group(1) if match else "$"
    message = text[: match.start()] if match else text
    unknown = _UNKNOWN_RE.fullmatch(message)
    if unknown:  # the path names the field itself, not the object holding it
        path = f"{path}.{unknown.group(1)}"
    return FieldError(path, message)


class ShuttingDown(EngineError):
    pass


class InvalidDependency(EngineError):
    def __init__(self, index: int, position: int, dep_id: str) -> None:
        super().__init__(f"depends_on[{position}]: no task {dep_id}")
        self.index = index
        self.position = position
        self.dep_id = dep_id


@dataclass(frozen=True, slots=True)
class Submitted:
    task: Task
    created: bool  # False: an earlier task with the same idempotency key was returned

"""What the client raises: the server's error (code, message, field path) or a transport
failure that outlasted the retries."""

from __future__ import annotations

from typing import Any


class TierqError(Exception):
    """Base of the client's errors."""


class ApiError(TierqError):
    """The server refused the call: its HTTP status, error code, message and details. For a
    bad field, ``path`` names it (``$[3].payload.url``)."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    @property
    def path(self) -> str | None:
        path = self.details.get("path")
        return path if isinstance(path, str) else None


class TransportError(TierqError):
    """The server could not be reached (or kept answering 429/503) through every retry."""


class WaitTimeout(TierqError):
    """``wait`` gave up before the task ended; ``task`` is how it was last seen."""

    def __init__(self, task: Any) -> None:
        super().__init__(f"task {task.id} is still {task.status.value}")
        self.task = task

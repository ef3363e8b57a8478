"""Logging: one JSON object per line (or plain text on a terminal), with the context of the
line: the request it belongs to, the task and attempt a worker is running, the tenant.

The context lives in context variables: the edge middleware sets the request id, the access
middleware the tenant, a worker the task id and attempt for the whole attempt (a handler's
child task copies them, so a handler's own log lines carry them too). Nothing here reads a
request or a task: whoever knows a value sets it.

What must stay true: a log line never carries a task's payload or result (the fields are
fixed, and the message is the caller's), so nothing on the redaction list can appear through
this module.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from tierq.config.checks import parse_levels

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tierq_request_id", default=None
)
TASK_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("tierq_task_id", default=None)
ATTEMPT: contextvars.ContextVar[int | None] = contextvars.ContextVar("tierq_attempt", default=None)
TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar("tierq_tenant", default=None)

_CONTEXT = (
    ("request_id", REQUEST_ID),
    ("task_id", TASK_ID),
    ("attempt", ATTEMPT),
    ("tenant", TENANT),
)
# This process's replica name, once the engine is built (one per process).
_node = ""


def set_node(node: str) -> None:
    global _node
    _node = node


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """time, level, logger, message, node, and whichever of request_id, task_id, attempt
    and tenant are set; ``exception`` with the traceback text when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "node": _node,
        }
        for name, var in _CONTEXT:
            value = var.get()
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def setup(level: str, fmt: str, levels: str, node: str) -> None:
    """Configure the root logger: ``fmt`` json, text, or auto (text on a terminal, else
    JSON); ``levels`` per logger over ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(TEXT_FORMAT))
    set_node(node)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    for name, value in parse_levels(levels).items():
        logging.getLogger(name).setLevel(getattr(logging, value))

"""What a task's ``notify`` may say, checked at submission, and the stored form of it.

``{"webhook": {"url": ..., "events": [...]}, "email": {"to": [...], "events": [...]}}``; events
default to ``DEFAULT_EVENTS``. A malformed URL, a scheme other than http/https, an address the
SSRF guard refuses, an unknown event name or a bad email address is a ``FieldError`` naming the
field path; so is a channel the deployment cannot send (no signing key, no SMTP server).
"""

from __future__ import annotations

import functools
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Annotated

import msgspec
import orjson

from tierq.config import Settings
from tierq.engine.errors import FieldError
from tierq.engine.handlers.base import PayloadError
from tierq.engine.handlers.http import parse_http_url
from tierq.engine.handlers.netguard import NetGuard, TargetRefused
from tierq.model import NON_TASK_EVENTS, EventType

DEFAULT_EVENTS: tuple[str, ...] = ("succeeded", "failed", "cancelled")
# Events a notification may be about: every task event (webhook_disabled, breaker and queue
# events are not about a task, and only subscriptions may ask for them).
TASK_EVENTS: frozenset[str] = frozenset(e.value for e in EventType) - NON_TASK_EVENTS
SUBSCRIPTION_EVENTS: frozenset[str] = frozenset(e.value for e in EventType)
MAX_URL = 2048
MAX_RECIPIENTS = 20

Events = Annotated[list[str], msgspec.Meta(min_length=1, max_length=len(EventType))]


class WebhookIn(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    events: Events | None = None


class EmailIn(msgspec.Struct, forbid_unknown_fields=True):
    to: Annotated[list[str], msgspec.Meta(min_length=1, max_length=MAX_RECIPIENTS)]
    events: Events | None = None


class NotifyIn(msgspec.Struct, forbid_unknown_fields=True):
    webhook: WebhookIn | None = None
    email: EmailIn | None = None


class Targets(msgspec.Struct, frozen=True, omit_defaults=True):
    """The stored form (``Task.notify``): every field filled in."""

    webhook_url: str | None = None
    webhook_events: tuple[str, ...] = ()
    email_to: tuple[str, ...] = ()
    email_events: tuple[str, ...] = ()


_decode_targets = msgspec.json.Decoder(Targets).decode


@functools.lru_cache(maxsize=64)
def guard_for(allow: tuple[str, ...]) -> NetGuard:
    return NetGuard(allow)


def check_url(url: str, path: str, guard: NetGuard) -> str:
    """A webhook URL a deliverer may call: http/https, a host, no credentials, a literal
    address the guard allows (names are checked again when resolved, at every delivery)."""
    if not url or len(url) > MAX_URL:
        raise FieldError(path, f"must be a URL of 1 to {MAX_URL} characters")
    try:
        parsed = parse_http_url(url, path)
    except PayloadError as exc:
        raise FieldError(exc.path, exc.message) from None
    if parsed.user or parsed.password:
        raise FieldError(path, "must not carry credentials")
    if any(c in url for c in "\r\n\t "):
        raise FieldError(path, "must not contain whitespace")
    try:
        guard.check_host(parsed.host or "")
    except TargetRefused as exc:
        raise FieldError(path, str(exc)) from None
    return str(parsed)


def check_events(events: list[str] | None, path: str, allowed: frozenset[str]) -> tuple[str, ...]:
    if events is None:
        return DEFAULT_EVENTS
    for i, name in enumerate(events):
        if name not in allowed:
            raise FieldError(f"{path}[{i}]", f"unknown event (known: {', '.join(sorted(allowed))})")
    return tuple(dict.fromkeys(events))


def check_address(address: str, path: str) -> str:
    if not address or len(address) > 254 or any(c in address for c in "\r\n<>,;\"' "):
        raise FieldError(path, "is not an email address")
    try:
        parsed = Address(addr_spec=address)
    except (HeaderParseError, ValueError, IndexError):
        raise FieldError(path, "is not an email address") from None
    if not parsed.username or not parsed.domain or parsed.addr_spec != address:
        raise FieldError(path, "is not an email address")
    return address


def check_notify(spec: NotifyIn, prefix: str, settings: Settings) -> bytes | None:
    """Validate a task's ``notify`` (``prefix`` is its path, e.g. ``$[3].notify``) and return
    its stored form, or None when it asks for nothing."""
    targets: dict[str, object] = {}
    if spec.webhook is not None:
        path = f"{prefix}.webhook"
        if not settings.webhook_secret:
            raise FieldError(path, "this server signs no webhooks: set TIERQ_WEBHOOK_SECRET")
        guard = guard_for(settings.http_allow_private)
        targets["webhook_url"] = check_url(spec.webhook.url, f"{path}.url", guard)
        targets["webhook_events"] = check_events(spec.webhook.events, f"{path}.events", TASK_EVENTS)
    if spec.email is not None:
        path = f"{prefix}.email"
        if not settings.smtp_host:
            raise FieldError(path, "this server sends no email: set TIERQ_SMTP_HOST")
        targets["email_to"] = tuple(
            dict.fromkeys(check_address(a, f"{path}.to[{i}]") for i, a in enumerate(spec.email.to))
        )
        targets["email_events"] = check_events(spec.email.events, f"{path}.events", TASK_EVENTS)
    return orjson.dumps(targets) if targets else None


def stored_targets(raw: bytes) -> Targets:
    return _decode_targets(raw)

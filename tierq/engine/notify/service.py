"""Notifications composed: the subscription cache and API, the notifier on the event bus, the
senders registered as task types, and the per-task delivery report.

The engine builds one ``Notifications`` and is otherwise unaware of it: it subscribes the
notifier to the bus, lets it submit deliveries like any tasks (``submit``: without the
draining check, so the flusher's last batches at shutdown still get their notifications), and
closes it on shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson

from tierq.config import Settings
from tierq.engine.errors import Submitted
from tierq.engine.events import Batch, EventSource
from tierq.engine.handlers.base import Handler, HandlerRegistry
from tierq.engine.instruments import EngineMetrics
from tierq.engine.notify.email import EmailSender
from tierq.engine.notify.messages import parse_attempt
from tierq.engine.notify.notifier import EMAIL_TYPE, WEBHOOK_TYPE, Notifier
from tierq.engine.notify.subscriptions import SubscriptionCache, Subscriptions
from tierq.engine.notify.webhook import WebhookSender
from tierq.model import Delivery, Execution, Outcome, Task, TaskState
from tierq.storage.notifications import NotificationStore

log = logging.getLogger("tierq.notify")


@dataclass(slots=True, frozen=True)
class Attempt:
    attempt: int
    started_at: float | None
    finished_at: float | None
    outcome: str | None
    status_code: int | None
    latency_ms: int | None
    error: str | None


@dataclass(slots=True, frozen=True)
class DeliveryReport:
    delivery: Delivery
    status: str  # "delivered", "pending" (being tried) or "failed" (given up)
    attempts: list[Attempt]


_STATUS = {TaskState.SUCCEEDED: "delivered", TaskState.FAILED: "failed"}


class Notifications:
    def __init__(
        self,
        settings: Settings,
        store: NotificationStore,
        registry: HandlerRegistry,
        instruments: EngineMetrics,
        events: EventSource,
        publish: Callable[[Batch], Awaitable[None]],
        submit: Callable[[Sequence[Task]], Awaitable[list[Submitted]]],
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._events = events
        self._publish = publish
        self._submit_tasks = submit
        self.cache = SubscriptionCache(store, clock)
        self.subscriptions = Subscriptions(store, self.cache, settings, clock)
        self.notifier = Notifier(settings, self.cache, self._submit, clock)
        self.webhooks = WebhookSender(settings, self.cache, self._disable, instruments, clock)
        registry.add(Handler(name=WEBHOOK_TYPE, run=self.webhooks.run))
        self.email: EmailSender | None = None
        if settings.smtp_host:
            self.email = EmailSender(settings, instruments, clock)
            registry.add(Handler(name=EMAIL_TYPE, run=self.email.run_delivery))
            if "email" in registry:
                log.info("task type email: the registered handler is kept (not the built-in)")
            else:
                registry.add(
                    Handler(name="email", run=self.email.run_task, validate=self.email.validate)
                )

    async def _submit(self, tasks: list[Task], deliveries: list[Delivery]) -> None:
        results = await self._submit_tasks(tasks)
        # A repeated event (the same idempotency key) made no new delivery: index only new.
        created = [d for d, r in zip(deliveries, results, strict=True) if r.created]
        await self._store.deliveries_add_many(created)

    async def _disable(self, sub_id: str, reason: str) -> None:
        sub = await self._store.webhook_get(sub_id)
        if sub is None or not sub.enabled:
            return
        await self.subscriptions.set_enabled(sub_id, False, reason)
        log.warning("webhook subscription %s disabled: %s", sub_id, reason)
        await self._publish(self._events.webhook_disabled(sub_id, reason))

    async def report(
        self,
        task_id: str,
        get_many: Callable[[list[str]], Awaitable[list[Task]]],
        executions: Callable[[str], Awaitable[list[Execution]]],
    ) -> list[DeliveryReport]:
        """Every delivery about ``task_id``, with each attempt (status code, latency)."""
        deliveries = await self._store.deliveries_of(task_id)
        tasks = {t.id: t for t in await get_many([d.delivery_id for d in deliveries])}
        out = []
        for delivery in deliveries:
            task = tasks.get(delivery.delivery_id)
            attempts = []
            for ex in await executions(delivery.delivery_id) if task is not None else []:
                status, latency = parse_attempt(ex.error)
                if ex.outcome is Outcome.SUCCEEDED and task is not None and task.result:
                    status, latency = _from_result(task.result)
                attempts.append(
                    Attempt(
                        ex.attempt,
                        ex.started_at,
                        ex.finished_at,
                        None if ex.outcome is None else ex.outcome.value,
                        status,
                        latency,
                        ex.error,
                    )
                )
            state = "pending" if task is None else _STATUS.get(task.state, "pending")
            if task is not None and task.state is TaskState.CANCELLED:
                state = "cancelled"
            out.append(DeliveryReport(delivery, state, attempts))
        return out

    async def close(self) -> None:
        await self.webhooks.close()


def _from_result(result: bytes) -> tuple[int | None, int | None]:
    try:
        value = orjson.loads(result)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(value, dict):
        return None, None
    status, latency = value.get("status"), value.get("latency_ms")
    return (
        status if isinstance(status, int) else None,
        latency if isinstance(latency, int) else None,
    )

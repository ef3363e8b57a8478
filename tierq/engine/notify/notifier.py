"""The notifier: an event-bus subscriber that turns matching events into deliveries.

For each published batch, every event a task's own ``notify`` asks for, and every event a
webhook subscription's filters match, becomes one delivery task (queue ``tierq.notifications``,
type ``tierq.webhook`` or ``tierq.email``), all of a batch committed in one group and indexed
by the task they are about in one statement. The delivery carries what it will send, built
now from the event and the task as it stood (the task changes later; the notification is
about this event).

What must stay true: a delivery's idempotency key is its (task, attempt, event, channel,
target), so an event published twice is delivered once; deliveries and their own events
never cause further notifications (their types start with ``tierq.``); a failure here never
touches the task the notification is about.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import orjson

from tierq.config import Settings
from tierq.engine.events import Batch
from tierq.engine.notify.messages import email_message, webhook_body
from tierq.engine.notify.subscriptions import SubscriptionCache
from tierq.engine.notify.targets import Targets, stored_targets
from tierq.ids import new_id
from tierq.model import Delivery, Event, Task, TaskState, WebhookSubscription

log = logging.getLogger("tierq.notify")

WEBHOOK_TYPE = "tierq.webhook"
EMAIL_TYPE = "tierq.email"
DELIVERY_QUEUE = "tierq.notifications"
INTERNAL_PREFIX = "tierq."
# Deliveries run before ordinary work: a notification should not wait behind a backlog.
DELIVERY_PRIORITY = 1000
# The retry horizon (Settings.notify_retry_horizon_s) ends a delivery, not an attempt count.
DELIVERY_ATTEMPTS = 1_000_000

SubmitDeliveries = Callable[[list[Task], list[Delivery]], Awaitable[None]]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class Notifier:
    def __init__(
        self,
        settings: Settings,
        subscriptions: SubscriptionCache,
        submit: SubmitDeliveries,
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._subscriptions = subscriptions
        self._submit = submit
        self._clock = clock
        # Stored notify targets decoded once per distinct value (tasks of one batch share).
        self._targets: dict[bytes, Targets] = {}

    def _targets_of(self, raw: bytes) -> Targets:
        targets = self._targets.get(raw)
        if targets is None:
            if len(self._targets) > 1000:
                self._targets.clear()
            targets = self._targets[raw] = stored_targets(raw)
        return targets

    async def __call__(self, batch: Batch) -> None:
        subs = None
        tasks: list[Task] = []
        deliveries: list[Delivery] = []
        now = self._clock()
        for event, task in zip(batch.events, batch.tasks, strict=True):
            if event.type.startswith(INTERNAL_PREFIX):
                continue
            if subs is None:
                subs = await self._subscriptions.current()
            try:
                self._deliveries_of(event, task, subs, now, tasks, deliveries)
            except Exception:
                # One notification that cannot be built must not cost the batch's others.
                log.exception("notification of %s %s not made", event.task_id, event.event)
        if tasks:
            await self._submit(tasks, deliveries)

    def _deliveries_of(
        self,
        event: Event,
        task: Task | None,
        subs: list[WebhookSubscription],
        now: float,
        tasks: list[Task],
        deliveries: list[Delivery],
    ) -> None:
        if task is not None and task.notify is not None:
            targets = self._targets_of(task.notify)
            if targets.webhook_url and event.event in targets.webhook_events:
                self._webhook(event, task, targets.webhook_url, None, now, tasks, deliveries)
            if targets.email_to and event.event in targets.email_events:
                self._email(event, task, targets.email_to, now, tasks, deliveries)
        for sub in subs:
            if sub.wants(event):
                self._webhook(event, task, sub.url, sub.id, now, tasks, deliveries)

    def _delivery_task(
        self,
        type_name: str,
        payload: dict[str, object],
        key: str,
        now: float,
        timeout_s: float,
        tenant: str,
        request_id: str | None = None,
    ) -> Task:
        task_id = str(payload["delivery_id"])
        return Task(
            task_id,
            type_name,
            DELIVERY_QUEUE,
            DELIVERY_PRIORITY,
            orjson.dumps(payload),
            TaskState.QUEUED,
            now,
            now,
            now,
            DELIVERY_ATTEMPTS,
            timeout_s,
            idempotency_key=key,
            tenant=tenant,  # the tenant whose event it reports: listed among its tasks
            request_id=request_id,  # the request behind the task the event is about
        )

    def _webhook(
        self,
        event: Event,
        task: Task | None,
        url: str,
        sub_id: str | None,
        now: float,
        tasks: list[Task],
        deliveries: list[Delivery],
    ) -> None:
        delivery_id = new_id(now)
        # A breaker's or queue's change happens many times: its time tells them apart.
        about = (
            event.task_id or event.subscription_id or f"{event.breaker or event.queue}@{event.at}"
        )
        key = f"notify:{about}:{event.attempt}:{event.event}:webhook:{_digest(sub_id or url)}"
        payload: dict[str, object] = {
            "delivery_id": delivery_id,
            "url": url,
            "msg_id": f"msg_{delivery_id}",
            "body": webhook_body(event, task).decode(),
            "subscription_id": sub_id,
            "created_at": now,
            "task_id": event.task_id,
            "event": event.event,
        }
        timeout = self._settings.webhook_timeout_s + 5.0
        request_id = task.request_id if task is not None else None
        tasks.append(
            self._delivery_task(WEBHOOK_TYPE, payload, key, now, timeout, event.tenant, request_id)
        )
        deliveries.append(Delivery(delivery_id, about, "webhook", url, event.event, now, sub_id))

    def _email(
        self,
        event: Event,
        task: Task,
        to: Sequence[str],
        now: float,
        tasks: list[Task],
        deliveries: list[Delivery],
    ) -> None:
        delivery_id = new_id(now)
        target = ", ".join(to)
        key = f"notify:{event.task_id}:{event.attempt}:{event.event}:email:{_digest(target)}"
        subject, text = email_message(event, task)
        payload: dict[str, object] = {
            "delivery_id": delivery_id,
            "to": list(to),
            "subject": subject,
            "text": text,
            "created_at": now,
            "task_id": event.task_id,
            "event": event.event,
        }
        timeout = self._settings.smtp_timeout_s + 5.0
        tasks.append(
            self._delivery_task(
                EMAIL_TYPE, payload, key, now, timeout, event.tenant, task.request_id
            )
        )
        deliveries.append(Delivery(delivery_id, event.task_id, "email", target, event.event, now))

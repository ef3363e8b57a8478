"""Routes of notifications: webhook subscriptions (``/api/v1/webhooks``) and the deliveries
made about a task (``/api/v1/tasks/{id}/notifications``). Decode, one engine call, encode."""

from __future__ import annotations

import msgspec
from aiohttp import web

from tierq.api.auth.access import AUDIT_RESOURCE, PRINCIPAL
from tierq.api.errors import ApiError
from tierq.api.permissions import Permission
from tierq.api.routes import ENGINE, json_response, read_json_body, scope, task_id_param
from tierq.api.routing import Route
from tierq.api.schemas import decode_as, delivery_out, subscription_out
from tierq.api.shapes import DeliveriesOut, SubscriptionList, SubscriptionOut
from tierq.engine.notify.service import Notifications
from tierq.engine.notify.subscriptions import SubscriptionIn


class EnabledIn(msgspec.Struct, forbid_unknown_fields=True):
    enabled: bool


_subscription = msgspec.json.Decoder(SubscriptionIn)
_enabled = msgspec.json.Decoder(EnabledIn)


def _notifications(request: web.Request) -> Notifications:
    notifications = request.app[ENGINE].notifications
    if notifications is None:
        raise ApiError(404, "not_found", "notifications are not available on this server")
    return notifications


async def create_webhook(request: web.Request) -> web.Response:
    spec = decode_as(_subscription, await read_json_body(request))
    sub = await _notifications(request).subscriptions.create(spec, request[PRINCIPAL].owner)
    request[AUDIT_RESOURCE] = sub.id
    return json_response(subscription_out(sub, secret=True), 201)


async def list_webhooks(request: web.Request) -> web.Response:
    subs = await _notifications(request).subscriptions.list(scope(request))
    return json_response(SubscriptionList([subscription_out(s) for s in subs]))


async def get_webhook(request: web.Request) -> web.Response:
    sub = await _notifications(request).subscriptions.get(
        request.match_info["webhook_id"], scope(request)
    )
    return json_response(subscription_out(sub))


async def update_webhook(request: web.Request) -> web.Response:
    change = decode_as(_enabled, await read_json_body(request))
    sub = await _notifications(request).subscriptions.set_enabled(
        request.match_info["webhook_id"], change.enabled, tenant=scope(request)
    )
    return json_response(subscription_out(sub))


async def delete_webhook(request: web.Request) -> web.Response:
    await _notifications(request).subscriptions.delete(
        request.match_info["webhook_id"], scope(request)
    )
    return web.Response(status=204)


async def task_notifications(request: web.Request) -> web.Response:
    task_id = task_id_param(request)
    engine = request.app[ENGINE]
    await engine.get(task_id, scope(request))  # 404 for an unknown or another tenant's task
    reports = await _notifications(request).report(
        task_id, engine.store.task_get_many, engine.executions
    )
    return json_response(DeliveriesOut(task_id, [delivery_out(r) for r in reports]))


_ADMIN = Permission.WEBHOOKS_ADMIN
_ONE = "/api/v1/webhooks/{webhook_id}"
_SUB = ((200, SubscriptionOut),)
ROUTES = [
    Route(
        "POST",
        "/api/v1/webhooks",
        create_webhook,
        _ADMIN,
        "Subscribe a URL to events",
        body=SubscriptionIn,
        answers=((201, SubscriptionOut),),
        description="The answer holds the signing secret, shown this once.",
    ),
    Route(
        "GET",
        "/api/v1/webhooks",
        list_webhooks,
        _ADMIN,
        "List webhook subscriptions",
        answers=((200, SubscriptionList),),
    ),
    Route("GET", _ONE, get_webhook, _ADMIN, "Get a webhook subscription", answers=_SUB),
    Route(
        "PATCH",
        _ONE,
        update_webhook,
        _ADMIN,
        "Change a webhook subscription",
        body=EnabledIn,
        answers=_SUB,
    ),
    Route(
        "DELETE",
        _ONE,
        delete_webhook,
        _ADMIN,
        "Delete a webhook subscription",
        answers=((204, None),),
    ),
    Route(
        "GET",
        "/api/v1/tasks/{task_id}/notifications",
        task_notifications,
        Permission.TASKS_READ,
        "Notifications delivered about a task, with every attempt",
        answers=((200, DeliveriesOut),),
    ),
]

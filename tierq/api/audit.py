"""``GET /api/v1/audit`` (admin): the audit log, newest first, filtered by actor, action,
resource and time, paged by ``before`` (the ``seq`` of the last row of the previous page). A
tenant's admin sees its tenant's rows; a platform admin every tenant's."""

from __future__ import annotations

import msgspec
from aiohttp import web

from tierq.api.auth.access import ACCESS, PRINCIPAL
from tierq.api.permissions import Permission
from tierq.api.routes import MAX_PAGE_SIZE, int_param, json_response, time_param
from tierq.api.routing import Param, Route
from tierq.api.shapes import NULL, AuditOut, AuditPage
from tierq.model import AuditFilter, AuditRecord
from tierq.timefmt import iso


def record_out(r: AuditRecord) -> AuditOut:
    e = r.entry
    return AuditOut(
        seq=r.seq,
        at=iso(e.at),
        actor=e.actor,
        tenant=e.tenant,
        role=e.role,
        action=e.action,
        resource_type=e.resource_type,
        resource_id=e.resource_id,
        request_id=e.request_id,
        source=e.source,
        status=e.status,
        changes=NULL if e.changes is None else msgspec.Raw(e.changes),
        hash=r.hash,
    )


async def list_audit(request: web.Request) -> web.Response:
    query = request.query
    before = int_param(request, "before", 0, 1, 2**62) or None
    flt = AuditFilter(
        tenant=request[PRINCIPAL].scope,
        actor=query.get("actor") or None,
        action=query.get("action") or None,
        resource=query.get("resource") or None,
        since=time_param(request, "from"),
        until=time_param(request, "to"),
        before_seq=before,
        size=int_param(request, "size", 50, 1, MAX_PAGE_SIZE),
    )
    rows, more = await request.app[ACCESS].audit_store.page(flt)
    items = [record_out(r) for r in rows]
    return json_response(AuditPage(items, more, rows[-1].seq if more and rows else None))


ROUTES = [
    Route(
        "GET",
        "/api/v1/audit",
        list_audit,
        Permission.AUDIT_READ,
        "The audit log: every change and refused credential",
        answers=((200, AuditPage),),
        params=(
            Param("actor", str, "key id or JWT subject"),
            Param("action", str, "e.g. task.cancel, key.create"),
            Param("resource", str, "resource id"),
            Param("from", str, "ISO 8601 time"),
            Param("to", str, "ISO 8601 time"),
            Param("before", int, "next_before of the previous page"),
            Param("size", int, f"page size, 1 to {MAX_PAGE_SIZE} (default 50)"),
        ),
    ),
]

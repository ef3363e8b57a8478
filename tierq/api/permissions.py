"""Who is calling (``Principal``), the permissions routes ask for, and what each role holds.

Roles are cumulative: viewer < submitter < operator < admin. One table (``ROLE_PERMISSIONS``)
is the only place a role's rights are written down; the route table (api/table.py) names one
permission per route; nothing else decides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from tierq.model import ALL_TENANTS, DEFAULT_TENANT, ROLES


class Permission(enum.StrEnum):
    PUBLIC = "public"  # no credential: health probes and the metrics scrape
    TASKS_READ = "tasks:read"  # tasks, their history, statistics
    TASKS_SUBMIT = "tasks:submit"
    TASKS_OPERATE = "tasks:operate"  # cancel, retry, delete
    SCHEDULES_READ = "schedules:read"
    SCHEDULES_WRITE = "schedules:write"  # create, edit, pause, resume, trigger, delete
    EVENTS_READ = "events:read"
    WEBHOOKS_ADMIN = "webhooks:admin"
    KEYS_ADMIN = "keys:admin"
    AUDIT_READ = "audit:read"
    FLOW_ADMIN = "flow:admin"  # pause and resume queues, set their limits, reset breakers


_VIEWER = frozenset({Permission.TASKS_READ, Permission.SCHEDULES_READ, Permission.EVENTS_READ})
_SUBMITTER = _VIEWER | {Permission.TASKS_SUBMIT}
_OPERATOR = _SUBMITTER | {Permission.TASKS_OPERATE, Permission.SCHEDULES_WRITE}
_ADMIN = _OPERATOR | {
    Permission.WEBHOOKS_ADMIN,
    Permission.KEYS_ADMIN,
    Permission.AUDIT_READ,
    Permission.FLOW_ADMIN,
}

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    "viewer": _VIEWER,
    "submitter": _SUBMITTER,
    "operator": _OPERATOR,
    "admin": _ADMIN,
}
assert tuple(ROLE_PERMISSIONS) == ROLES


class RateClass(enum.StrEnum):
    """The budget a route draws from (settings rate_<class>_per_s / _burst)."""

    SUBMIT = "submit"
    READ = "read"
    ADMIN = "admin"


def rate_class(permission: Permission) -> RateClass | None:
    if permission is Permission.PUBLIC:
        return None
    if permission is Permission.TASKS_SUBMIT:
        return RateClass.SUBMIT
    if permission.value.endswith(":read"):
        return RateClass.READ
    return RateClass.ADMIN


@dataclass(frozen=True, slots=True)
class Principal:
    tenant: str  # a tenant, or ALL_TENANTS for a platform key
    role: str
    actor: str  # the key id, "jwt:<sub>", or "anonymous"
    key_id: str | None = None
    rate_limits: dict[str, tuple[float, int]] | None = None  # the key's own, by rate class

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self.role]

    @property
    def scope(self) -> str | None:
        """The tenant every query is restricted to; None for a platform admin (all)."""
        return None if self.tenant == ALL_TENANTS else self.tenant

    @property
    def owner(self) -> str:
        """The tenant what this caller creates belongs to (a platform key's: ``default``)."""
        return DEFAULT_TENANT if self.tenant == ALL_TENANTS else self.tenant


# Who calls when credentials are not required (auth off, or auto with no key and no JWT):
# the loopback operator of the whole deployment, like the CLI on the record store (what it
# creates belongs to the default tenant).
ANONYMOUS = Principal(tenant=ALL_TENANTS, role="admin", actor="anonymous")

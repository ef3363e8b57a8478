"""The access middleware and the object that composes access control's parts.

Per request, in this order: the route's permission (from the route table; public routes pass
straight through); the brute-force guard; the credential -> Principal (or the anonymous
operator when credentials are not required, for loopback clients only); the permission check;
the rate limit and the tenant's cap on requests in progress; the handler; then the rate-limit
headers, and an audit row for every change and every refusal of a credential or permission.

What must stay true: every failure to authenticate gets the same 401 (body and
``WWW-Authenticate``), whatever the reason; 403 is only for an authenticated caller lacking a
permission; the tenant a handler acts for comes from the Principal only.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time

import orjson
from aiohttp import web

from tierq.api.auth.audit import AuditWriter, redact, redaction_set
from tierq.api.auth.credentials import Authenticator, KeyUsage, Unauthenticated, presented
from tierq.api.auth.guard import BruteForceGuard
from tierq.api.auth.jwt import JwtVerifier
from tierq.api.auth.limits import RateGate, headers
from tierq.api.auth.sessions import COOKIE, CSRF_HEADER, Sessions, same_site
from tierq.api.errors import REQUEST_ID, ApiError, Handler, to_response
from tierq.api.permissions import ANONYMOUS, Permission, Principal, RateClass, rate_class
from tierq.api.routing import Route
from tierq.config import Settings
from tierq.logs import TENANT as LOG_TENANT
from tierq.metrics import Metrics
from tierq.model import AuditEntry
from tierq.storage.audit import AuditStore
from tierq.storage.keys import KeyStore
from tierq.storage.ratelimit import Decision, RateLimiter

log = logging.getLogger("tierq.api.auth")

PRINCIPAL = web.RequestKey("principal", Principal)
# What a handler may tell the audit log: the id of what it created or changed, and (for an
# edit) the changed fields as JSON, masked.
AUDIT_RESOURCE = web.RequestKey("audit_resource", str)
AUDIT_CHANGES = web.RequestKey("audit_changes", bytes)
_RATE = web.RequestKey("rate", tuple)
# The client's address (client_address), set once per request by the middleware.
SOURCE = web.RequestKey("source", str)
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The longest change set kept in an audit row (beyond: the field names only).
MAX_CHANGES = 4096
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="tierq"'}


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "valid credentials required (X-API-Key, or Authorization: Bearer)",
        headers=UNAUTHORIZED_HEADERS,
    )


def client_address(request: web.Request, proxies: tuple[IPNetwork, ...]) -> str:
    """The client's address: the peer's, or behind trusted proxies the right-most address of
    X-Forwarded-For that is not one of them (what a client writes there itself is further
    left, so it cannot pose as another address)."""
    peer = request.remote or "-"
    if not proxies or not _within(peer, proxies):
        return peer
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed(hops):
        if hop and not _within(hop, proxies):
            return hop
    return peer


def _within(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    return any(ip in n for n in networks)


def is_loopback(address: str | None) -> bool:
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return address == "localhost"


class Access:
    def __init__(
        self,
        settings: Settings,
        keys: KeyStore,
        audit_store: AuditStore,
        limiter: RateLimiter,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self._refusals = {
            reason: metrics.access_refusals.labels(reason)
            for reason in ("unauthenticated", "forbidden", "rate_limited", "guard", "inflight")
        }
        self._refusals["shed"] = metrics.access_refusals.labels("shed")
        self.keys = keys
        self.audit_store = audit_store
        jwt = JwtVerifier(settings) if settings.jwt_key or settings.jwt_jwks_url else None
        self.authenticator = Authenticator(settings, keys, jwt)
        self.usage = KeyUsage(self.authenticator, keys)
        self.gate = RateGate(settings, limiter)
        self.guard = BruteForceGuard(settings.auth_failure_limit, settings.auth_failure_window_s)
        self.audit = (
            AuditWriter(audit_store, settings.audit_retention_s, metrics.audit_rows.inc)
            if settings.audit
            else None
        )
        self.redacted = redaction_set(settings.redact_fields)
        self.proxies = tuple(
            ipaddress.ip_network(c, strict=False) for c in settings.trusted_proxies
        )
        self.sessions = Sessions(settings.ui_session_secret, settings.ui_session_ttl_s)

    async def start(self) -> None:
        await self.gate.limiter.open()
        if self.authenticator.jwt is not None:
            await self.authenticator.jwt.refresh()
        await self.usage.start()
        if self.audit is not None:
            await self.audit.start()

    async def stop(self) -> None:
        try:
            await self.usage.stop()
            if self.audit is not None:
                await self.audit.stop()
        finally:
            await self.gate.limiter.close()

    def refused(self, reason: str) -> None:
        """Count a refusal (tierq_access_refusals_total)."""
        self._refusals[reason].inc()

    # ---- the steps of a request ------------------------------------------------------------

    async def identify(self, request: web.Request, route: Route) -> Principal:
        now = time.time()
        source = request[SOURCE] = client_address(request, self.proxies)
        wait = self.guard.retry_after(source, now)
        if wait > 0:
            self.refused("guard")
            raise ApiError(
                429,
                "rate_limited",
                "too many failed authentications from this address",
                headers={"Retry-After": str(max(1, round(wait)))},
            )
        credential = presented(request)
        cookie = request.cookies.get(COOKIE) if credential is None else None
        if cookie and self.settings.auth != "off":
            return await self._from_session(request, route, cookie, now)
        if credential is None or self.settings.auth == "off":
            if await self.authenticator.required():
                self._refused(request, route, "auth.missing", 401, now)
                raise unauthorized()
            if not (self.settings.insecure_no_auth or self.loopback_client(request, source)):
                raise ApiError(
                    403,
                    "forbidden",
                    "without credentials this server serves loopback clients only",
                )
            return ANONYMOUS
        try:
            principal = await self.authenticator.authenticate(credential)
        except Unauthenticated as exc:
            log.info("authentication refused from %s: %s", source, exc)
            self._refused(request, route, "auth.failed", 401, now)
            raise unauthorized() from None
        if route.permission not in principal.permissions:
            self._refused(request, route, "auth.forbidden", 403, now, principal)
            raise ApiError(
                403,
                "forbidden",
                f"role {principal.role} lacks the permission {route.permission}",
                {"permission": str(route.permission)},
            )
        return principal

    async def _from_session(
        self, request: web.Request, route: Route, cookie: str, now: float
    ) -> Principal:
        """A dashboard's request: its session's credential, checked as if it were sent, and
        for a change the CSRF token and the browser's word that it comes from this site."""
        try:
            principal = await self.session_principal(cookie)
        except Unauthenticated as exc:
            log.info("session refused from %s: %s", request[SOURCE], exc)
            self._refused(request, route, "auth.failed", 401, now)
            raise unauthorized() from None
        session = self.sessions.read(cookie)
        if route.mutating:
            token = request.headers.get(CSRF_HEADER, "")
            fetch_site, origin = (
                request.headers.get("Sec-Fetch-Site"),
                request.headers.get("Origin"),
            )
            forged = session is None or not hmac.compare_digest(token, session.csrf)
            if forged or not same_site(fetch_site, origin, request.host):
                self._refused(request, route, "auth.csrf", 403, now, principal)
                raise ApiError(
                    403, "csrf", "a change from the dashboard needs its CSRF token, same-site"
                )
        if route.permission not in principal.permissions:
            self._refused(request, route, "auth.forbidden", 403, now, principal)
            raise ApiError(
                403,
                "forbidden",
                f"role {principal.role} lacks the permission {route.permission}",
                {"permission": str(route.permission)},
            )
        return principal

    async def session_principal(self, cookie: str) -> Principal:
        """Who a session cookie signs in: Unauthenticated when forged, expired, or its
        credential no longer works."""
        session = self.sessions.read(cookie)
        if session is None:
            raise Unauthenticated("session cookie forged or expired")
        if session.key_hash is not None:
            return await self.authenticator.by_hash(session.key_hash)
        if session.token is not None:
            return await self.authenticator.authenticate(session.token)
        raise Unauthenticated("session holds no credential")

    def loopback_client(self, request: web.Request, source: str) -> bool:
        """Whether a caller without credentials may be served: a loopback client. A request
        a proxy forwarded comes from a loopback peer whatever its client, so it counts only
        when the proxy is trusted (its X-Forwarded-For then named ``source``)."""
        if not is_loopback(source):
            return False
        forwarded = "X-Forwarded-For" in request.headers or "Forwarded" in request.headers
        return not forwarded or _within(request.remote or "-", self.proxies)

    def _refused(
        self,
        request: web.Request,
        route: Route,
        action: str,
        status: int,
        now: float,
        principal: Principal | None = None,
    ) -> None:
        self.refused("unauthenticated" if status == 401 else "forbidden")
        if status == 401:
            self.guard.failed(request[SOURCE], now)
        if self.audit is not None:
            who = principal or Principal("-", "-", "-")
            self.audit.record(self._entry(request, route, who, status, now, action))

    def _entry(
        self,
        request: web.Request,
        route: Route,
        principal: Principal,
        status: int,
        now: float,
        action: str | None = None,
    ) -> AuditEntry:
        resource_id = request.get(AUDIT_RESOURCE)
        if resource_id is None:
            ids = [v for k, v in request.match_info.items() if k.endswith("_id")]
            resource_id = ids[0] if ids else None
        return AuditEntry(
            at=now,
            actor=principal.actor,
            tenant=principal.tenant,
            role=principal.role,
            action=action or f"{route.method} {route.path}",
            resource_type=route.path.split("/")[3] if route.path.startswith("/api/") else "-",
            resource_id=resource_id,
            request_id=request.get(REQUEST_ID, "-"),
            source=request.get(SOURCE) or request.remote or "-",
            status=status,
            changes=request.get(AUDIT_CHANGES),
        )

    async def changed_fields(self, request: web.Request) -> bytes | None:
        """An edit's fields as the audit log keeps them: the JSON object sent (aiohttp kept
        the body the handler read), masked, cut at ``MAX_CHANGES`` bytes."""
        try:
            body = orjson.loads(await request.read())
        except (orjson.JSONDecodeError, web.HTTPException):
            return None
        if not isinstance(body, dict):
            return None
        changes = orjson.dumps(redact(body, self.redacted))
        if len(changes) > MAX_CHANGES:
            changes = orjson.dumps({"fields": sorted(str(k) for k in body)[:100]})
        return changes

    async def admit(
        self, request: web.Request, principal: Principal, kind: RateClass, cost: int
    ) -> None:
        """Charge ``cost`` to the caller's budget of ``kind``; 429 when it is spent."""
        decision, buckets = await self.gate.check(principal, kind, cost)
        request[_RATE] = (decision, buckets, kind)
        if not decision.allowed:
            self.refused("rate_limited")
            raise ApiError(
                429,
                "rate_limited",
                f"rate limit of {kind} exceeded",
                {"retry_after_s": round(decision.retry_after_s, 3)},
                headers=headers(decision, buckets, kind),
            )


ACCESS = web.AppKey("access", Access)


async def charge(request: web.Request, cost: int) -> None:
    """A submission of ``cost`` tasks: charged to the submit budget once its size is known
    (the middleware charged the first task already)."""
    if cost > 1:
        await request.app[ACCESS].admit(request, request[PRINCIPAL], RateClass.SUBMIT, cost - 1)


def access_middleware(table: dict[tuple[str, str], Route]) -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = table.get((request.method, resource.canonical)) if resource else None
        if route is None or route.permission is Permission.PUBLIC:
            return await handler(request)
        if "tenant" in request.query:
            raise ApiError(
                400,
                "bad_parameter",
                "the tenant is taken from the credential, never from the request",
                {"parameter": "tenant"},
            )
        acc = request.app[ACCESS]
        principal = await acc.identify(request, route)
        request[PRINCIPAL] = principal
        LOG_TENANT.set(principal.tenant)
        kind = rate_class(route.permission)
        if kind is not None:
            await acc.admit(request, principal, kind, 1)
        if not acc.gate.enter(principal.tenant):
            acc.refused("inflight")
            raise ApiError(
                429,
                "too_many_requests",
                "too many requests of this tenant in progress",
                headers={"Retry-After": "1"},
            )
        try:
            response = await handler(request)
        except Exception as exc:  # shaped here so the audit row gets the status sent
            if isinstance(exc, web.HTTPException) and exc.status < 400:
                raise
            response = to_response(exc, request)
        finally:
            acc.gate.leave(principal.tenant)
        rate: tuple[Decision, list, RateClass] | None = request.get(_RATE)  # type: ignore[type-arg]
        if rate is not None and not response.prepared:
            response.headers.update(headers(*rate))
        if route.mutating and acc.audit is not None:
            if route.method == "PATCH" and AUDIT_CHANGES not in request:
                changes = await acc.changed_fields(request)
                if changes is not None:
                    request[AUDIT_CHANGES] = changes
            acc.audit.record(acc._entry(request, route, principal, response.status, time.time()))
        return response

    return access

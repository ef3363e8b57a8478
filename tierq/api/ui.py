"""The dashboard at ``/ui/`` (``/`` redirects there): static files shipped in the package
(``api/static/ui/``: plain JavaScript modules and CSS, no build step, no CDN) that talk to the
JSON API only, and the sign-in that turns an API key or a JWT into a session cookie
(``auth/sessions.py``; the access middleware honours it, with CSRF checks for changes)."""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from aiohttp import web

from tierq.api.auth.access import ACCESS, SOURCE, client_address, unauthorized
from tierq.api.auth.credentials import Unauthenticated
from tierq.api.auth.keys import hash_key
from tierq.api.auth.sessions import COOKIE, Session
from tierq.api.permissions import ANONYMOUS, Permission, Principal
from tierq.api.routes import json_response, read_json_body
from tierq.api.routing import Route, Text
from tierq.api.schemas import decode_as
from tierq.api.shapes import Out
from tierq.api.static import StaticFiles

# The pages run only their own files: no inline script or style, no other origin, no frames.
_STATIC = StaticFiles(
    "ui",
    {
        "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    },
)


class SignIn(msgspec.Struct, forbid_unknown_fields=True):
    api_key: Annotated[str, msgspec.Meta(max_length=512)] | None = None
    token: Annotated[str, msgspec.Meta(max_length=16384)] | None = None


class SessionOut(Out):
    signed_in: bool  # False: no credential is needed (a loopback caller), or none was given
    required: bool  # whether this server needs a credential from this caller
    role: str | None
    tenant: str | None
    actor: str | None
    permissions: list[str]
    csrf: str | None  # send as X-CSRF-Token with every change
    expires_at: float | None


_sign_in = msgspec.json.Decoder(SignIn)


async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


async def index(request: web.Request) -> web.Response:
    return _STATIC.serve(request, "index.html")


async def asset(request: web.Request) -> web.Response:
    return _STATIC.serve(request, request.match_info["asset"])


def _out(principal: Principal, required: bool, session: Session | None) -> SessionOut:
    return SessionOut(
        signed_in=session is not None,
        required=required,
        role=principal.role,
        tenant=principal.tenant,
        actor=principal.actor,
        permissions=sorted(p.value for p in principal.permissions),
        csrf=None if session is None else session.csrf,
        expires_at=None if session is None else session.expires_at,
    )


async def sign_in(request: web.Request) -> web.Response:
    access = request.app[ACCESS]
    body = decode_as(_sign_in, await read_json_body(request))
    credential = body.api_key or body.token
    source = request[SOURCE] = client_address(request, access.proxies)
    if not credential or access.guard.retry_after(source, time.time()) > 0:
        raise unauthorized()
    try:
        principal = await access.authenticator.authenticate(credential)
    except Unauthenticated:
        access.guard.failed(source, time.time())
        access.refused("unauthenticated")
        raise unauthorized() from None
    if body.api_key:
        cookie, session = access.sessions.issue(key_hash=hash_key(body.api_key))
    else:
        cookie, session = access.sessions.issue(token=body.token)
    response = json_response(_out(principal, True, session))
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(access.sessions.ttl_s),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure or request.headers.get("X-Forwarded-Proto") == "https",
    )
    return response


async def who(request: web.Request) -> web.Response:
    """The caller as the dashboard sees it: signed in, or served without a credential."""
    access = request.app[ACCESS]
    cookie = request.cookies.get(COOKIE)
    if cookie:
        try:
            principal = await access.session_principal(cookie)
            return json_response(_out(principal, True, access.sessions.read(cookie)))
        except Unauthenticated:
            pass
    required = await access.authenticator.required()
    source = client_address(request, access.proxies)
    if required or not (
        access.settings.insecure_no_auth or access.loopback_client(request, source)
    ):
        return json_response(SessionOut(False, True, None, None, None, [], None, None))
    return json_response(_out(ANONYMOUS, False, None))


async def sign_out(request: web.Request) -> web.Response:
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/")
    return response


_PAGE = ((200, Text("text/html", "the dashboard")), (304, None))
ROUTES = [
    Route(
        "GET",
        "/",
        root,
        Permission.PUBLIC,
        "Redirect to the dashboard",
        answers=((302, None), (200, Text("text/html", "the dashboard, once redirected"))),
    ),
    Route("GET", "/ui/", index, Permission.PUBLIC, "The dashboard", answers=_PAGE),
    Route(
        "GET",
        "/ui/{asset}",
        asset,
        Permission.PUBLIC,
        "The dashboard's scripts and styles",
        answers=((200, Text("text/javascript", "or text/css")), (304, None)),
    ),
    Route(
        "POST",
        "/ui/session",
        sign_in,
        Permission.PUBLIC,
        "Sign the dashboard in with an API key or a JWT (sets an HttpOnly session cookie)",
        body=SignIn,
        answers=((200, SessionOut),),
    ),
    Route(
        "GET",
        "/ui/session",
        who,
        Permission.PUBLIC,
        "Who the dashboard is signed in as, with the CSRF token for changes",
        answers=((200, SessionOut),),
    ),
    Route(
        "DELETE",
        "/ui/session",
        sign_out,
        Permission.PUBLIC,
        "Sign the dashboard out",
        answers=((204, None),),
    ),
]

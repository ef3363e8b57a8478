"""Dashboard sessions: a browser signs in once with an API key or a JWT and then carries an
HttpOnly, ``SameSite=Strict`` cookie (the event stream included: ``EventSource`` cannot send
headers). The cookie is signed (HMAC-SHA256 with ``TIERQ_UI_SESSION_SECRET``, or a random
secret per process when unset) and holds what authenticates the caller on every request: the
SHA-256 of the API key (never the key) or the JWT itself, so a key revoked or a token
expired ends the session on the next request, as it would end the header's use.

What must stay true: a cookie is honoured only with a valid signature and before its expiry;
a change made with a cookie carries the session's CSRF token in ``X-CSRF-Token`` and is
refused when the browser says it comes from another site (``Sec-Fetch-Site``, ``Origin``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

import msgspec

COOKIE = "tierq_session"
CSRF_HEADER = "X-CSRF-Token"


class Session(msgspec.Struct, frozen=True):
    expires_at: float
    csrf: str
    key_hash: str | None = None  # an API key's SHA-256
    token: str | None = None  # a JWT


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Session).decode


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    def __init__(self, secret: str, ttl_s: float) -> None:
        self._key = (secret or secrets.token_hex(32)).encode()
        self.ttl_s = ttl_s

    def issue(self, key_hash: str | None = None, token: str | None = None) -> tuple[str, Session]:
        session = Session(time.time() + self.ttl_s, secrets.token_urlsafe(24), key_hash, token)
        body = _b64(_encode(session))
        return f"{body}.{self._sign(body)}", session

    def read(self, cookie: str) -> Session | None:
        """The session a cookie holds; None when it is forged, malformed or expired."""
        body, _, signature = cookie.partition(".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            session = _decode(_unb64(body))
        except (ValueError, msgspec.DecodeError):
            return None
        return session if session.expires_at > time.time() else None

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())


def same_site(fetch_site: str | None, origin: str | None, host: str | None) -> bool:
    """Whether the browser says a request comes from this site (absent headers: a client that
    is not a browser, or an old one; the CSRF token still has to match)."""
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    if origin is not None and host is not None:
        return origin.split("://", 1)[-1] == host
    return True

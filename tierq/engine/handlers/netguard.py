"""SSRF protection for the http task type.

A task's URL comes from whoever may submit tasks, so by default the http type reaches only
public addresses: loopback, private (RFC 1918, ULA), link-local (the 169.254.169.254 cloud
metadata service), multicast, unspecified, reserved and CGNAT addresses are refused, in every
spelling (IPv4-mapped and other IPv6 forms embedding an IPv4 address are unwrapped and checked
as that address; in the NAT64 local-use prefix 64:ff9b:1::/48, whose layout depends on the
operator's translator, every RFC 6052 layout is unwrapped and every reading outside 0.0.0.0/8
must pass).
``Settings.http_allow_private`` opens CIDRs or host names ('*' = everything); an entry that is
neither stops start-up (``ConfigError``).

What must stay true: the connection goes to an address that was checked. Host names are
resolved once, by ``GuardedResolver`` inside aiohttp's connector, and the connector connects to
exactly the addresses the resolver returned; so a name that resolves to a public address for a
check and to a private one for the connection (DNS rebinding) cannot get through. IP literals
never reach a resolver in aiohttp, so callers check them with ``NetGuard.check_host`` first.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from tierq.config import ConfigError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
# RFC 6052 section 2.2: where the IPv4 bytes sit for the prefix lengths that fit inside a /48
# (bits 64-71, byte 8, are always skipped). The local-use prefix may hold any of them.
_RFC6052_SLICES = (((6, 8), (9, 11)), ((7, 8), (9, 12)), ((9, 13),), ((12, 16),))
# A reading in 0.0.0.0/8 is the zero padding of another layout, not a destination: 0/8 is
# never forwarded (RFC 1122), so a translator cannot reach anything there.
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
# Host names as DNS spells them (labels of letters, digits, "-" and "_"), optional final dot.
_HOST_NAME = re.compile(
    r"(?=.{1,253}\.?$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)"
    r"(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)
_METADATA = {ipaddress.IPv4Address("169.254.169.254"), ipaddress.IPv6Address("fd00:ec2::254")}


class TargetRefused(Exception):
    """The target address may not be reached. Deliberately not an ``OSError``: aiohttp wraps
    resolver ``OSError``s into DNS errors (which would be retried), but lets this through."""


def _embedded_ipv4s(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address may stand for, if it is one of the embedding forms
    (several only for the NAT64 local-use prefix); empty when it is none."""
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        return (ip.teredo[1],)
    if ip in _NAT64:
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    packed = ip.packed
    if ip in _NAT64_LOCAL:
        readings = [
            ipaddress.IPv4Address(b"".join(packed[a:b] for a, b in slices))
            for slices in _RFC6052_SLICES
        ]
        real = tuple(r for r in readings if r not in _THIS_NETWORK)
        return real or tuple(readings)
    if packed[:12] == bytes(12) and int(ip) > 1:  # deprecated IPv4-compatible ::a.b.c.d
        return (ipaddress.IPv4Address(packed[12:]),)
    return ()


def refusal_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address, or None when it is one."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(ip.packed)
        inners = _embedded_ipv4s(ip)
        if inners:
            for inner in inners:
                reason = refusal_reason(inner)
                if reason is not None:
                    return f"{reason} (embedded in {ip})"
            return None
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip in _METADATA:
        return "the cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "a CGNAT (100.64.0.0/10) address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


def parse_ip_host(host: str) -> IPAddress | None:
    """The address a URL host denotes when it is an IP literal in any spelling the C
    resolver accepts (``127.1``, ``2130706433``, ``0x7f.0.0.1``, ``[::1]``), else None."""
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if ":" in text:
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text.rstrip(".")))
    except OSError:
        return None


def _looks_like_address(entry: str) -> bool:
    """An entry meant as an address or CIDR (a host name has no "/" or ":" and never ends in
    a numeric label), so a typo in one is an error instead of a never-matching name."""
    if "/" in entry or ":" in entry:
        return True
    last = entry.rstrip(".").rsplit(".", 1)[-1]
    return last.isascii() and last.isdigit()


def _normalise_name(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


class NetGuard:
    """The allow list of ``Settings.http_allow_private`` and the checks against it."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow_all = False
        self._networks: list[IPNetwork] = []
        self._names: set[str] = set()
        for entry in allow:
            entry = entry.strip()
            if not entry:
                continue
            if entry == "*":
                self.allow_all = True
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError as exc:
                if _looks_like_address(entry):
                    raise ConfigError(
                        f"TIERQ_HTTP_ALLOW_PRIVATE: {entry!r} is not a valid address or CIDR"
                        f" ({exc})"
                    ) from None
            if not _HOST_NAME.fullmatch(entry):
                raise ConfigError(
                    f"TIERQ_HTTP_ALLOW_PRIVATE: {entry!r} is neither a CIDR nor a host name"
                )
            self._names.add(_normalise_name(entry))

    def _in_networks(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self._networks if ip.version == net.version)

    def _allowed_ip(self, ip: IPAddress) -> bool:
        if self._in_networks(ip):
            return True
        if isinstance(ip, ipaddress.IPv6Address):
            inners = _embedded_ipv4s(ipaddress.IPv6Address(ip.packed))
            # Every reading must be allowed: the translator picks one, we cannot know which.
            return bool(inners) and all(self._in_networks(inner) for inner in inners)
        return False

    def name_allowed(self, host: str) -> bool:
        return self.allow_all or _normalise_name(host) in self._names

    def check_ip(self, host: str, ip: IPAddress) -> None:
        """Raise ``TargetRefused`` unless ``ip`` (reached through ``host``) may be contacted."""
        if self.allow_all or self._allowed_ip(ip):
            return
        reason = refusal_reason(ip)
        if reason is not None:
            shown = host if host.strip("[]") == str(ip) else f"{host} ({ip})"
            raise TargetRefused(
                f"refused to connect to {shown}: {reason}; "
                "list it in TIERQ_HTTP_ALLOW_PRIVATE to allow it"
            )

    def check_host(self, host: str) -> None:
        """Check a URL host without resolving it: IP literals are checked here (aiohttp does
        not pass them to the resolver); names are left to ``GuardedResolver``."""
        if self.name_allowed(host):
            return
        ip = parse_ip_host(host)
        if ip is not None:
            self.check_ip(host, ip)

    def filter_addresses(
        self, host: str, infos: Sequence[tuple[Any, ...]]
    ) -> list[tuple[socket.AddressFamily, str, int]]:
        """Check EVERY address a name resolved to (``getaddrinfo`` tuples): one refused
        address refuses the name, so a round-robin mix cannot sneak a private one in.
        Returns (family, address text, scope id)."""
        if not infos:
            raise TargetRefused(f"{host} did not resolve to any address")
        trusted_name = self.name_allowed(host)
        out: list[tuple[socket.AddressFamily, str, int]] = []
        for family, _type, _proto, _canon, sockaddr in infos:
            if family not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = str(sockaddr[0]).split("%", 1)[0]
            scope = int(sockaddr[3]) if family == socket.AF_INET6 and len(sockaddr) > 3 else 0
            if not trusted_name:
                self.check_ip(host, ipaddress.ip_address(text))
            out.append((family, text, scope))
        if not out:
            raise TargetRefused(f"{host} did not resolve to an IP address")
        return out


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that resolves, checks every address and returns only checked ones."""

    def __init__(self, guard: NetGuard) -> None:
        self._guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, family=family, flags=socket.AI_ADDRCONFIG
        )
        results: list[ResolveResult] = []
        for fam, text, scope in self._guard.filter_addresses(host, infos):
            results.append(
                {
                    "hostname": host,
                    "host": f"{text}%{scope}" if scope else text,
                    "port": port,
                    "family": fam,
                    "proto": 0,
                    # Numeric: the connector must not resolve again (that lookup is unchecked).
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        return results

    async def close(self) -> None:
        return None


def guarded_session(guard: NetGuard, limit: int = 100) -> aiohttp.ClientSession:
    """A client session whose every connection goes through ``guard`` (call inside the
    running loop: a session is loop-bound)."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(guard), limit=limit, ttl_dns_cache=10)
    return aiohttp.ClientSession(
        connector=connector,
        # No proxies from the environment (the proxy, not the checked address, would be
        # connected to) and no cookies shared between unrelated requests.
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
    )

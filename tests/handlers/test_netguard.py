from __future__ import annotations

import ipaddress
import socket

import pytest

from tierq.config import ConfigError
from tierq.engine.handlers.netguard import (
    GuardedResolver,
    NetGuard,
    TargetRefused,
    parse_ip_host,
    refusal_reason,
)

REFUSED = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "100.127.255.255",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:100.64.0.1",
    "::127.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2001:db8::1",  # documentation
    "fd00:ec2::254",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_refused_addresses(address):
    ip = ipaddress.ip_address(address)
    assert refusal_reason(ip) is not None
    with pytest.raises(TargetRefused, match="refused"):
        NetGuard().check_ip(address, ip)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address):
    ip = ipaddress.ip_address(address)
    assert refusal_reason(ip) is None
    NetGuard().check_ip(address, ip)


def test_reasons_are_specific():
    def reason(a: str) -> str:
        return refusal_reason(ipaddress.ip_address(a)) or ""

    assert "metadata" in reason("169.254.169.254")
    assert "loopback" in reason("::ffff:127.0.0.1")
    assert "CGNAT" in reason("100.64.0.1")
    assert "link-local" in reason("fe80::1")
    assert "private" in reason("10.0.0.1")
    assert "unspecified" in reason("0.0.0.0")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::ffff:7f00:1", "::ffff:7f00:1"),
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("example.com", None),
        ("localhost", None),
    ],
)
def test_parse_ip_host_spellings(host, expected):
    ip = parse_ip_host(host)
    assert (str(ip) if ip else None) == expected


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f.0.0.1", "127.1", "[::1]", "::ffff:7f00:1", "0", "0x0a000001"]
)
def test_check_host_refuses_literal_spellings(host):
    with pytest.raises(TargetRefused):
        NetGuard().check_host(host)


def test_check_host_leaves_names_to_resolver():
    NetGuard().check_host("example.com")  # no DNS here: names are checked when resolved


def test_allow_list_cidr_name_and_star():
    guard = NetGuard(["127.0.0.0/8", "db.internal", "fd00::/8"])
    guard.check_host("127.0.0.1")
    guard.check_host("::ffff:127.0.0.1")  # mapped form of an allowed address
    guard.check_host("DB.Internal.")
    guard.check_host("fd00::5")
    with pytest.raises(TargetRefused):
        guard.check_host("10.0.0.1")
    with pytest.raises(TargetRefused):
        guard.check_host("169.254.169.254")
    star = NetGuard(["*"])
    star.check_host("169.254.169.254")
    star.check_host("::1")


def _info(address: str, port: int = 80) -> tuple:
    if ":" in address:
        return (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0))
    return (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))


def test_every_resolved_address_is_checked():
    guard = NetGuard()
    ok = guard.filter_addresses("pub.example", [_info("8.8.8.8"), _info("2606:4700::1")])
    assert [a for _, a, _ in ok] == ["8.8.8.8", "2606:4700::1"]
    # One private address among public ones refuses the whole name (rebinding/round robin).
    with pytest.raises(TargetRefused, match=r"10\.0\.0\.7"):
        guard.filter_addresses("mixed.example", [_info("8.8.8.8"), _info("10.0.0.7")])
    with pytest.raises(TargetRefused):
        guard.filter_addresses("empty.example", [])


def test_allowed_name_trusts_its_addresses():
    guard = NetGuard(["svc.local"])
    out = guard.filter_addresses("svc.local", [_info("10.1.2.3")])
    assert out == [(socket.AF_INET, "10.1.2.3", 0)]


async def test_resolver_refuses_localhost():
    resolver = GuardedResolver(NetGuard())
    with pytest.raises(TargetRefused, match="loopback"):
        await resolver.resolve("localhost", 80, family=socket.AF_UNSPEC)
    with pytest.raises(TargetRefused):
        await resolver.resolve("0x7f.0.0.1", 80, family=socket.AF_INET)


async def test_resolver_returns_numeric_checked_addresses_when_allowed():
    resolver = GuardedResolver(NetGuard(["127.0.0.0/8", "::1/128"]))
    results = await resolver.resolve("localhost", 8080, family=socket.AF_UNSPEC)
    assert results and {r["host"] for r in results} <= {"127.0.0.1", "::1"}
    assert all(r["port"] == 8080 and r["hostname"] == "localhost" for r in results)
    assert all(r["flags"] & socket.AI_NUMERICHOST for r in results)
    await resolver.close()


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b:1::a00:1",  # local-use NAT64, /96 layout of 10.0.0.1
        "64:ff9b:1::7f00:1",  # ... of 127.0.0.1
        "64:ff9b:1:a00:1::",  # /48 layout of 10.0.0.1
        "64:ff9b:1:a00:1:0:808:808",  # /48 layout of 10.0.0.1, a public-looking /96 tail
        "64:ff9b:1:a9:fe:a9fe::",  # /56 layout of 169.254.169.254
        "64:ff9b:1::",
    ],
)
def test_nat64_local_use_prefix_is_unwrapped(address):
    assert refusal_reason(ipaddress.ip_address(address)) is not None
    with pytest.raises(TargetRefused):
        NetGuard().check_host(address)


def test_nat64_local_use_prefix_of_a_public_address_passes():
    assert refusal_reason(ipaddress.ip_address("64:ff9b:1::808:808")) is None
    assert "private" in refusal_reason(ipaddress.ip_address("64:ff9b:1::a00:1"))


@pytest.mark.parametrize(
    "entry",
    ["10.0.0.0/33", "10.0.0.300", "10.0.0", "fe80::zz", "::1/129", "*.internal", "bad name"],
)
def test_malformed_allow_entries_stop_start_up(entry):
    with pytest.raises(ConfigError) as info:
        NetGuard(["127.0.0.1", entry])
    assert str(info.value).startswith("TIERQ_HTTP_ALLOW_PRIVATE: ")
    assert repr(entry) in str(info.value)


def test_host_names_and_addresses_are_still_accepted():
    guard = NetGuard(["db.internal.", "localhost", "my_host-1.example", "10.1.2.3", "fd00::/8"])
    guard.check_host("localhost")
    guard.check_host("10.1.2.3")
    guard.check_host("fd00::1")


def test_nat64_local_use_reason_names_the_embedded_address():
    reason = refusal_reason(ipaddress.ip_address("64:ff9b:1:a9:fe:a9fe::"))
    assert reason is not None and reason.startswith("the cloud metadata address")

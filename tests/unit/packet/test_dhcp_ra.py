"""Router advertisements, judged by scapy: flags per ipv6_mode, options, addressing."""

from __future__ import annotations

import pytest
from scapy.layers.inet6 import (
    ICMPv6ND_RA,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import Ether

from tests.checksums import bad_checksums
from vnet.packet import ra
from vnet.packet.addr import ip6_int, mac_int

RTR, HOST = "0a:00:00:00:01:04", "02:00:00:00:00:0a"


def judged(out: bytes) -> Ether:
    assert bad_checksums(out) == []
    p = Ether(out)
    assert p.src == RTR and p[IPv6].src == "fe80::800:ff:fe00:104" and p[IPv6].hlim == 255
    assert p[ICMPv6NDOptSrcLLAddr].lladdr == RTR
    return p


@pytest.mark.parametrize(
    ("mode", "m", "o", "a"),
    [("slaac", 0, 0, 1), ("dhcpv6-stateless", 0, 1, 1), ("dhcpv6-stateful", 1, 1, 0)],
)
def test_flags_follow_the_mode(mode: str, m: int, o: int, a: int) -> None:
    p = judged(ra.frame(mac_int(RTR), ip6_int("fd00:1::77"), 64, mode, mtu=1442))
    assert (p.dst, p[IPv6].dst) == ("33:33:00:00:00:01", "ff02::1")
    r = p[ICMPv6ND_RA]
    assert (r.M, r.O, r.routerlifetime, r.chlim) == (m, o, 1800, 64)
    pi = p[ICMPv6NDOptPrefixInfo]
    assert (pi.prefix, pi.prefixlen, pi.A, pi.L) == ("fd00:1::", 64, a, 1)
    assert (pi.validlifetime, pi.preferredlifetime) == (2592000, 604800)
    assert p[ICMPv6NDOptMTU].mtu == 1442


def test_answer_to_a_solicitation_goes_to_the_solicitor_and_no_mtu_when_none() -> None:
    out = ra.frame(
        mac_int(RTR),
        ip6_int("fd00:1::"),
        64,
        "slaac",
        dst_mac=mac_int(HOST),
        dst_ip=ip6_int("fe80::1"),
    )
    p = judged(out)
    assert (p.dst, p[IPv6].dst) == (HOST, "fe80::1")
    assert not p.haslayer(ICMPv6NDOptMTU)


def test_an_unknown_mode_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="ipv6_mode"):
        ra.body(mac_int(RTR), 0, 64, "dhcp")

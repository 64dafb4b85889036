"""DHCPv6 answers, judged by scapy: advertise, reply, rapid commit, confirm, release, silence."""

from __future__ import annotations

import pytest
from scapy.layers.dhcp6 import (
    DUID_LL,
    DHCP6_Advertise,
    DHCP6_Confirm,
    DHCP6_InfoRequest,
    DHCP6_Rebind,
    DHCP6_Release,
    DHCP6_Renew,
    DHCP6_Reply,
    DHCP6_Request,
    DHCP6_Solicit,
    DHCP6OptClientId,
    DHCP6OptDNSServers,
    DHCP6OptIA_NA,
    DHCP6OptIAAddress,
    DHCP6OptRapidCommit,
    DHCP6OptServerId,
    DHCP6OptStatusCode,
)
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from tests.checksums import bad_checksums
from vnet.packet import dhcpv6
from vnet.packet.addr import ip6_int, mac_int

CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:0a", "0a:00:00:00:01:04"
CLIENT_LL, ADDR, DNS = "fe80::ff:fe00:a", "fd00:1::10", "fd00::53"
LEASE = dhcpv6.Lease6(ip6_int(ADDR), (ip6_int(DNS),), 7200)
SERVER_DUID = dhcpv6.duid_ll(mac_int(SERVER_MAC))
CID = DHCP6OptClientId(duid=DUID_LL(lladdr=CLIENT_MAC))
SID = DHCP6OptServerId(duid=DUID_LL(lladdr=SERVER_MAC))


def answer(p: Packet, lease: dhcpv6.Lease6 = LEASE) -> Ether | None:
    msg = dhcpv6.parse(bytes(p))
    kind = dhcpv6.decide(msg, SERVER_DUID)
    if kind is None:
        return None
    out = dhcpv6.frame(
        msg, kind, lease, mac_int(SERVER_MAC), mac_int(CLIENT_MAC), ip6_int(CLIENT_LL)
    )
    assert bad_checksums(out) == []
    e = Ether(out)
    assert (e.src, e.dst, e[IPv6].src, e[IPv6].dst) == (
        SERVER_MAC,
        CLIENT_MAC,
        "fe80::800:ff:fe00:104",
        CLIENT_LL,
    )
    assert (e[UDP].sport, e[UDP].dport) == (547, 546)
    assert e[DHCP6OptServerId].duid.lladdr == SERVER_MAC
    assert bytes(e[DHCP6OptClientId].duid) == bytes(CID.duid)
    return e


def ia(iaid: int = 7, addr: str | None = None) -> DHCP6OptIA_NA:
    return DHCP6OptIA_NA(iaid=iaid, ianaopts=[DHCP6OptIAAddress(addr=addr)] if addr else [])


def leased(e: Ether, iaid: int = 7) -> None:
    i = e[DHCP6OptIA_NA]
    assert (i.iaid, i.T1, i.T2) == (iaid, 3600, 5760)
    a = e[DHCP6OptIAAddress]
    assert (a.addr, a.preflft, a.validlft) == (ADDR, 7200, 7200)
    assert e[DHCP6OptDNSServers].dnsservers == [DNS]


def test_solicit_is_advertised_and_rapid_commit_replied() -> None:
    e = answer(DHCP6_Solicit(trid=0xABCDEF) / CID / ia())
    assert e is not None and e.haslayer(DHCP6_Advertise) and e[DHCP6_Advertise].trid == 0xABCDEF
    leased(e)
    r = answer(DHCP6_Solicit(trid=1) / CID / DHCP6OptRapidCommit() / ia(iaid=9))
    assert r is not None and r.haslayer(DHCP6_Reply) and r.haslayer(DHCP6OptRapidCommit)
    leased(r, iaid=9)


@pytest.mark.parametrize("cls", [DHCP6_Request, DHCP6_Renew])
def test_request_and_renew_naming_us_are_replied_with_the_address(cls: type[Packet]) -> None:
    e = answer(cls(trid=5) / CID / SID / ia(addr=ADDR))
    assert e is not None and e.haslayer(DHCP6_Reply)
    leased(e)
    other = DHCP6OptServerId(duid=DUID_LL(lladdr="0a:00:00:00:09:09"))
    assert answer(cls(trid=5) / CID / other / ia(addr=ADDR)) is None
    assert answer(cls(trid=5) / CID / ia(addr=ADDR)) is None  # names no server


def test_rebind_needs_no_server_id() -> None:
    e = answer(DHCP6_Rebind(trid=5) / CID / ia(addr=ADDR))
    assert e is not None and e.haslayer(DHCP6_Reply)
    leased(e)


def test_confirm_says_on_link_or_not() -> None:
    ok = answer(DHCP6_Confirm(trid=2) / CID / ia(addr=ADDR))
    assert ok is not None and ok[DHCP6OptStatusCode].statuscode == 0
    bad = answer(DHCP6_Confirm(trid=2) / CID / ia(addr="fd00:9::10"))
    assert bad is not None and bad[DHCP6OptStatusCode].statuscode == 4


def test_release_is_replied_success_and_no_address() -> None:
    e = answer(DHCP6_Release(trid=3) / CID / SID / ia(addr=ADDR))
    assert e is not None and e[DHCP6OptStatusCode].statuscode == 0
    assert not e.haslayer(DHCP6OptIA_NA)


def test_information_request_gets_dns_only_and_stateless_no_address() -> None:
    e = answer(DHCP6_InfoRequest(trid=4) / CID)
    assert e is not None and e[DHCP6OptDNSServers].dnsservers == [DNS]
    assert not e.haslayer(DHCP6OptIA_NA)
    s = answer(DHCP6_Solicit(trid=1) / CID / ia(), LEASE._replace(address=0))
    assert s is not None and not s.haslayer(DHCP6OptIA_NA)


def test_no_client_id_no_answer() -> None:
    assert answer(DHCP6_Solicit(trid=1) / ia()) is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (b"\x01\x00", "message"),
        (bytes(DHCP6_Reply(trid=1) / CID), "msg-type"),
        (bytes(DHCP6_Solicit(trid=1)) + b"\x00\x01\x00\x09\x00", "option 1"),
        (bytes(DHCP6_Solicit(trid=1)) + b"\x00\x03\x00\x04\x00\x00\x00\x01", "IA_NA"),
        (bytes(DHCP6_Solicit(trid=1)) + b"\x00\x01", "option header"),
    ],
)
def test_malformed_messages_are_refused_naming_the_field(data: bytes, field: str) -> None:
    with pytest.raises(dhcpv6.DhcpError, match=field):
        dhcpv6.parse(data)

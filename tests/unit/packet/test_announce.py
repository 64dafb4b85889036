"""Gratuitous ARP and unsolicited NA frames, judged by scapy: untagged and on a VLAN."""

from __future__ import annotations

from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether

from vnet.packet.announce import announcements

MAC = 0x02AABBCCDD01


def test_a_gratuitous_arp_and_an_unsolicited_na_per_address() -> None:
    arp, na = (Ether(f) for f in announcements(MAC, ["198.51.100.5", "2001:db8::5"]))
    assert (arp.dst, arp.src, arp[ARP].op) == ("ff:ff:ff:ff:ff:ff", "02:aa:bb:cc:dd:01", 1)
    assert arp[ARP].psrc == arp[ARP].pdst == "198.51.100.5"
    assert Dot1Q not in arp
    assert (na.dst, na[IPv6].src, na[IPv6].dst) == ("33:33:00:00:00:01", "2001:db8::5", "ff02::1")
    assert na[ICMPv6ND_NA].tgt == "2001:db8::5" and na[ICMPv6ND_NA].O == 1
    assert na[ICMPv6ND_NA].S == 0 and na[IPv6].hlim == 255
    assert na[ICMPv6NDOptDstLLAddr].lladdr == "02:aa:bb:cc:dd:01"


def test_on_a_vlan_every_frame_carries_its_tag() -> None:
    frames = [Ether(f) for f in announcements(MAC, ["198.51.100.5", "2001:db8::5"], vlan=100)]
    assert [f[Dot1Q].vlan for f in frames] == [100, 100]
    assert frames[0][ARP].psrc == "198.51.100.5"
    assert frames[1][ICMPv6ND_NA].tgt == "2001:db8::5"

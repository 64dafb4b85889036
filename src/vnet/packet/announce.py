"""Frames a workload's new location announces itself with after it moves.

A gratuitous ARP (a request whose sender and target address are both the
port's own, to broadcast) per IPv4 address, and an unsolicited neighbour
advertisement (override set, to all-nodes ff02::1, from the address itself)
per IPv6 address: what a hypervisor sends for a guest after a live migration,
so learning switches and neighbour caches on the path move their entry to
the new port.  With `vlan` the frames carry that 802.1Q tag (a router's
gateway announced on an external network on a VLAN, out of a trunk uplink).
Pure: addresses in, frames out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from . import arp, ethernet, icmpv6, ipv6

__all__ = ["announcements"]

BROADCAST = (1 << 48) - 1
ALL_NODES = int(ipaddress.IPv6Address("ff02::1"))


def announcements(mac: int, addresses: Iterable[str], vlan: int | None = None) -> list[bytes]:
    tags = [ethernet.VlanTag(ethernet.ETH_TYPE_8021Q, 0, 0, vlan)] if vlan is not None else []
    out = []
    for text in addresses:
        a = ipaddress.ip_address(text)
        if a.version == 4:
            garp = arp.build(1, mac, int(a), 0, int(a))
            out.append(ethernet.build(BROADCAST, mac, ethernet.ETH_TYPE_ARP, garp, tags))
        else:
            na = icmpv6.build_na(int(a), ALL_NODES, int(a), mac, solicited=False)
            pkt = ipv6.build(int(a), ALL_NODES, 58, na, hop_limit=255)
            dst = (0x3333 << 32) | (ALL_NODES & 0xFFFFFFFF)
            out.append(ethernet.build(dst, mac, ethernet.ETH_TYPE_IPV6, pkt, tags))
    return out

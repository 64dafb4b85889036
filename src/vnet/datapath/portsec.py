"""Port security: what a workload may send, and what it may receive.

On by default for every port, as the secure defaults of the big vSwitches:

* forged transmits: the source MAC must be the port's MAC;
* MAC address changes: the port's MAC is fixed -- the configured one, or the
  first unicast source seen (a "sticky" MAC) -- unless changes are allowed,
  in which case a new source MAC becomes the port's MAC;
* promiscuous mode off: a port receives only unicast for its own MAC,
  broadcast and multicast (the VLAN is `normal`'s business);
* allowed IP addresses (optional): IPv4 and IPv6 sources, ARP sender
  addresses and ND targets must be among them (0.0.0.0 and :: for DHCP and
  duplicate address detection, and the port's IPv6 link-local, are allowed);
  an ARP or ND message must also carry the port's MAC as its hardware address.

Checks read the flow key already extracted, so they cost a few comparisons
per packet; the reason of a refusal is the drop counter's name.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..packet import flowkey as fk
from .port import Port

__all__ = ["egress_allowed", "ingress_check", "link_local"]

ETH_ARP = 0x0806
ETH_IP = 0x0800
ETH_IPV6 = 0x86DD
GROUP_BIT = 1 << 40


def link_local(mac: int) -> int:
    """The EUI-64 IPv6 link-local address of a MAC (RFC 4291 appendix A)."""
    hi, lo = mac >> 24, mac & 0xFFFFFF
    iid = ((hi ^ 0x020000) << 40) | (0xFFFE << 24) | lo
    return (0xFE80 << 112) | iid


def ingress_check(port: Port, key: Sequence[int]) -> str | None:
    """None when the frame may enter, else the drop reason."""
    cfg = port.config
    src = key[fk.ETH_SRC]
    if src & GROUP_BIT:
        return "source_multicast"
    mac = port.locked_mac
    if mac is None or (src != mac and cfg.mac_changes):
        port.locked_mac = mac = src
    elif src != mac and not cfg.forged_transmits:
        return "forged_transmit"
    et = key[fk.ETH_TYPE]
    allowed = cfg.allowed_ips
    if et == ETH_ARP:
        if key[fk.ARP_SHA] != mac and not cfg.forged_transmits:
            return "arp_spoof"
        spa = key[fk.ARP_SPA]
        if allowed and spa and (4, spa) not in allowed:
            return "arp_spoof"
    elif et == ETH_IP:
        s = key[fk.IPV4_SRC]
        if allowed and s and (4, s) not in allowed:
            return "ip_spoof"
    elif et == ETH_IPV6:
        s = key[fk.IPV6_SRC]
        if allowed and s and (6, s) not in allowed and s != link_local(mac):
            return "ip_spoof"
        if key[fk.IP_PROTO] == 58 and key[fk.ICMP_TYPE] in (135, 136):
            ll = key[fk.ND_SLL] if key[fk.ICMP_TYPE] == 135 else key[fk.ND_TLL]
            if ll and ll != mac:
                return "nd_spoof"
            t = key[fk.ND_TARGET]
            if (
                key[fk.ICMP_TYPE] == 136
                and allowed
                and (6, t) not in allowed
                and t != link_local(mac)
            ):
                return "nd_spoof"
    return None


def egress_allowed(port: Port, dst: int) -> bool:
    """May `port` receive a frame for `dst`?  (No promiscuous mode unless enabled.)"""
    if dst & GROUP_BIT:
        return True
    cfg = port.config
    if not cfg.port_security or cfg.promiscuous:
        return True
    mac = port.locked_mac
    return mac is None or dst == mac

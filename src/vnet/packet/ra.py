"""Router advertisements a router sends for one subnet (RFC 4861 4.2, 4.6; RFC 4862 SLAAC).

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |  Type (134)   |     Code      |          Checksum             |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   | Cur Hop Limit |M|O|  Reserved |       Router Lifetime         |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                         Reachable Time                        |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                          Retrans Timer                        |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |   Options: source link-layer address (1), MTU (5), prefix (3) |

Prefix information (type 3, length 4): prefix length | L A reserved |
valid lifetime(4) | preferred lifetime(4) | reserved(4) | prefix(16).
MTU (type 5, length 1): reserved(2) | MTU(4).

Pure: `frame` builds the whole Ethernet frame from the router interface's
link-local address (fe80:: + modified EUI-64 of its MAC), hop limit 255
(receivers drop ND with any other, RFC 4861 6.1.2), to all-nodes ff02::1
(33:33:00:00:00:01) or, answering a solicitation, to the soliciting host.
The flags follow the subnet's `ipv6_mode`:

  mode               M  O  prefix A (autonomous)   prefix L (on-link)
  slaac              0  0  1                        1
  dhcpv6-stateless   0  1  1                        1
  dhcpv6-stateful    1  1  0                        1

Defaults are RFC 4861's: router lifetime 1800 s (3 x MaxRtrAdvInterval
600 s), prefix valid 30 days and preferred 7 days, reachable time and
retrans timer 0 (unspecified), current hop limit 64.
"""

from __future__ import annotations

import struct

from . import ethernet, icmpv6, ipv6
from .dhcpv6 import link_local

__all__ = ["ALL_NODES", "FLAG_M", "FLAG_O", "MODES", "body", "frame"]

ALL_NODES = 0xFF020000000000000000000000000001
_ALL_NODES_MAC = 0x333300000001
FLAG_M, FLAG_O = 0x80, 0x40
PREFIX_L, PREFIX_A = 0x80, 0x40
OPT_PREFIX, OPT_MTU = 3, 5
MODES: dict[str, tuple[int, int]] = {
    "slaac": (0, PREFIX_L | PREFIX_A),
    "dhcpv6-stateless": (FLAG_O, PREFIX_L | PREFIX_A),
    "dhcpv6-stateful": (FLAG_M | FLAG_O, PREFIX_L),
}


def body(
    router_mac: int,
    prefix: int,
    prefix_len: int,
    mode: str,
    *,
    mtu: int = 0,
    lifetime: int = 1800,
    hop_limit: int = 64,
    valid: int = 2592000,
    preferred: int = 604800,
) -> bytes:
    """The RA's body after type/code/checksum."""
    if mode not in MODES:
        raise ValueError(f"ipv6_mode: {mode!r}, one of {', '.join(MODES)}")
    flags, pflags = MODES[mode]
    out = bytearray(struct.pack("!BBHII", hop_limit, flags, lifetime, 0, 0))
    out += bytes((icmpv6.OPT_SLL, 1)) + router_mac.to_bytes(6, "big")
    if mtu:
        out += struct.pack("!BBHI", OPT_MTU, 1, 0, mtu)
    mask = ((1 << prefix_len) - 1) << (128 - prefix_len)
    out += struct.pack("!BBBBIII", OPT_PREFIX, 4, prefix_len, pflags, valid, preferred, 0)
    out += (prefix & mask).to_bytes(16, "big")
    return bytes(out)


def frame(
    router_mac: int,
    prefix: int,
    prefix_len: int,
    mode: str,
    *,
    mtu: int = 0,
    dst_mac: int | None = None,
    dst_ip: int | None = None,
    lifetime: int = 1800,
) -> bytes:
    """A whole RA frame; to all-nodes unless `dst_mac`/`dst_ip` name the solicitor."""
    src = link_local(router_mac)
    dip = ALL_NODES if dst_ip is None else dst_ip
    dmac = _ALL_NODES_MAC if dst_mac is None else dst_mac
    msg = icmpv6.build(
        src,
        dip,
        icmpv6.ND_RA,
        0,
        body(router_mac, prefix, prefix_len, mode, mtu=mtu, lifetime=lifetime),
    )
    return ethernet.build(dmac, router_mac, 0x86DD, ipv6.build(src, dip, 58, msg, hop_limit=255))

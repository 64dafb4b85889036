"""Tunnel encapsulation: the outer headers a tunnel port puts around a frame and takes off.

Three kinds, as Open vSwitch's flow-based tunnel ports carry them:

* `vxlan`  -- outer IPv4 / UDP 4789 / VXLAN (RFC 7348), VNI = `tun_id`;
* `geneve` -- outer IPv4 / UDP 6081 / Geneve (RFC 8926) with option TLVs
  (the `tun_metadata` fields, mapped through `geneve.TLV_MAP_DEFAULT`);
* `nvgre`  -- outer IPv4 / GRE (protocol 0x6558, key = VSID << 8 | FlowID,
  RFC 7637) straight on IP protocol 47.

Outer headers are built whole here (the tunnel device sends them on a raw
socket), so everything a VTEP is judged by is decided in one place: DF set
(a tunnel never fragments; the switch answers an oversize frame with ICMP
instead, see `too_big`), TTL 64, the UDP source port drawn from a hash of the
inner flow (RFC 7348 §5: 49152-65535, entropy for ECMP in the underlay; the
NVGRE FlowID from the same hash), and a UDP checksum that may be turned off
(zero is allowed over IPv4).  The IPv4 header checksum is always valid.

`overhead` is what a kind adds to an inner IP packet: the outer IPv4 (20),
UDP (8) or GRE-with-key (8), the VXLAN/Geneve header (8) and the inner
Ethernet header (14) -- VXLAN 50, Geneve 50 + options, NVGRE 42; an IPv6
underlay adds 20.  Decoding raises `DecodeError` with a reason for anything
short or malformed; the switch counts it as a drop and carries on.

Only an IPv4 underlay is built for now; the overhead already speaks of IPv6.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from . import ethernet, geneve, gre, icmp, icmpv6, ipv4, ipv6, vxlan
from .checksum import internet_checksum, pseudo_header_v4
from .errors import DecodeError, Reason
from .geneve import GeneveOption

__all__ = [
    "KINDS",
    "Decapped",
    "Outer",
    "decap_gre",
    "decap_udp",
    "encap",
    "overhead",
    "too_big",
    "udp_port",
]

KINDS = ("vxlan", "geneve", "nvgre")
_UDP_PORT = {"vxlan": vxlan.VXLAN_PORT, "geneve": geneve.GENEVE_PORT}
_BASE = {"vxlan": 50, "geneve": 50, "nvgre": 42}
_IP4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
FLAG_DF = 0x4000
TTL = 64


class Outer(NamedTuple):
    """What the tunnel metadata says about the outer headers of one frame."""

    src: int  # underlay IPv4 addresses
    dst: int
    key: int  # VNI / VSID (24 bits)
    entropy: int  # a hash of the inner flow (any int)
    options: tuple[GeneveOption, ...] = ()
    tos: int = 0
    udp_csum: bool = True


class Decapped(NamedTuple):
    src: int
    dst: int
    key: int
    options: tuple[GeneveOption, ...]
    inner: bytes


def udp_port(kind: str) -> int | None:
    """The UDP destination port of a kind; None for NVGRE (raw IP protocol 47)."""
    return _UDP_PORT.get(kind)


def overhead(kind: str, options: int = 0, ipv6: bool = False) -> int:
    """Bytes a tunnel adds to an inner IP packet (`options`: Geneve option bytes)."""
    return _BASE[kind] + (options if kind == "geneve" else 0) + (20 if ipv6 else 0)


def _ipv4(src: int, dst: int, proto: int, payload_len: int, tos: int, ident: int) -> bytearray:
    hdr = bytearray(
        _IP4.pack(
            0x45,
            tos,
            20 + payload_len,
            ident & 0xFFFF,
            FLAG_DF,
            TTL,
            proto,
            0,
            src.to_bytes(4, "big"),
            dst.to_bytes(4, "big"),
        )
    )
    struct.pack_into("!H", hdr, 10, internet_checksum(hdr))
    return hdr


def encap(kind: str, inner: bytes, o: Outer, ident: int = 0) -> bytes:
    """The whole outer IPv4 packet carrying `inner` (an Ethernet frame)."""
    if kind == "nvgre":
        body = gre.build_nvgre(o.key, inner, flow_id=o.entropy & 0xFF)
        return bytes(_ipv4(o.src, o.dst, 47, len(body), o.tos, ident)) + body
    if kind == "vxlan":
        body = vxlan.build(o.key, inner)
    elif kind == "geneve":
        body = geneve.build(o.key, inner, o.options)
    else:
        raise ValueError(f"unknown tunnel kind {kind!r} (one of {', '.join(KINDS)})")
    sport = 49152 | (o.entropy & 0x3FFF)
    length = 8 + len(body)
    udp = bytearray(_UDP.pack(sport, _UDP_PORT[kind], length, 0))
    if o.udp_csum:
        c = internet_checksum(pseudo_header_v4(o.src, o.dst, 17, length), udp, body) or 0xFFFF
        struct.pack_into("!H", udp, 6, c)
    return bytes(_ipv4(o.src, o.dst, 17, length, o.tos, ident) + udp) + body


def decap_udp(kind: str, src: int, dst: int, payload: bytes) -> Decapped:
    """A VXLAN or Geneve UDP payload (as a UDP socket reads it) -> key, options, frame."""
    if kind == "vxlan":
        h, off = vxlan.parse(payload, 0)
        if not h.vni_valid:
            raise DecodeError(Reason.BAD_VXLAN, "I flag clear", 0)
        return Decapped(src, dst, h.vni, (), payload[off:])
    g, off = geneve.parse(payload, 0)
    if g.version != 0:
        raise DecodeError(Reason.BAD_GENEVE, f"version {g.version}", 0)
    if g.protocol != gre.GRE_PROTO_TEB:
        raise DecodeError(Reason.BAD_GENEVE, f"protocol {g.protocol:#06x} is not Ethernet", 0)
    for opt in g.options:
        # RFC 8926 §3.5: a critical option (type's high bit) the receiver does not know
        # means the frame must be dropped
        if opt.type & 0x80 and (opt.cls, opt.type) not in geneve.TLV_MAP_DEFAULT:
            raise DecodeError(Reason.GENEVE_UNKNOWN_CRITICAL, f"option {opt.cls:#x}/{opt.type:#x}")
    return Decapped(src, dst, g.vni, g.options, payload[off:])


def too_big(frame: bytes, mtu: int) -> bytes | None:
    """The ICMP error that tells the sender of `frame` its path MTU is `mtu`.

    IPv4 with DF: "fragmentation needed" (type 3 code 4, RFC 1191) with the
    next-hop MTU; IPv6: "packet too big" (RFC 8201).  It comes from the address
    the frame was sent to, back to its sender's MAC, with as much of the
    original packet as an ICMP error may carry.  None when no answer is due:
    IPv4 without DF (the network may fragment it), an ICMP error itself, or
    anything else.
    """
    l2, et = ethernet.header_len(frame)
    eth = frame[6:12] + frame[0:6] + frame[12:l2]
    ip = frame[l2:]
    if et == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 0xF) * 4
        if not ip[6] & 0x40 or (ip[9] == 1 and len(ip) > ihl and ip[ihl] not in (0, 8, 13, 15, 17)):
            return None
        body = icmp.build(3, 4, struct.pack("!HH", 0, mtu), ip[: min(len(ip), 548)])
        src, dst = int.from_bytes(ip[16:20], "big"), int.from_bytes(ip[12:16], "big")
        return eth + ipv4.build(src, dst, 1, body, ttl=64)
    if et == 0x86DD and len(ip) >= 40:
        if ip[6] == 58 and len(ip) > 40 and ip[40] < 128:
            return None
        src, dst = int.from_bytes(ip[24:40], "big"), int.from_bytes(ip[8:24], "big")
        body = icmpv6.build(src, dst, 2, 0, struct.pack("!I", max(mtu, 1280)) + ip[:1232])
        return eth + ipv6.build(src, dst, 58, body, hop_limit=64)
    return None


def decap_gre(packet: bytes) -> Decapped:
    """An IPv4 packet read from a raw protocol-47 socket -> VSID and frame (NVGRE only)."""
    if len(packet) < 20:
        raise DecodeError(Reason.TRUNCATED_IPV4, f"{len(packet)} bytes", 0)
    ihl = (packet[0] & 0xF) * 4
    if packet[0] >> 4 != 4 or ihl < 20 or len(packet) < ihl:
        raise DecodeError(Reason.BAD_IPV4_IHL, f"header length {ihl}", 0)
    src = int.from_bytes(packet[12:16], "big")
    dst = int.from_bytes(packet[16:20], "big")
    g, off = gre.parse(packet, ihl)
    if g.protocol != gre.GRE_PROTO_TEB or not g.key_present:
        raise DecodeError(Reason.BAD_GRE, f"protocol {g.protocol:#06x}, key {g.key_present}", ihl)
    return Decapped(src, dst, g.vsid, (), packet[off:])

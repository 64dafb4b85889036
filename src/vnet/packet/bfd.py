"""BFD control packets (RFC 5880 §4.1) and the frame that carries them between chassis.

How Open vSwitch sends BFD over a tunnel (the frame vnet must send and accept
to peer with an Open vSwitch chassis; sources: openvswitch/ovs lib/bfd.c
`bfd_put_packet`, `bfd_should_process_flow`, `bfd_process_packet`,
`bfd_configure`; ovn-org/ovn controller/bfd.c `bfd_run`):

* The control packet is put, whole, as the *inner* Ethernet frame of the
  tunnel port the session runs on: Ethernet dst 00:23:20:00:00:01
  (`eth_addr_bfd`; `bfd_local_dst_mac` overrides), src the port's MAC,
  IPv4 with TTL 255 (RFC 5881 §5, "MAXTTL"), TOS 0x18 (low delay |
  throughput), source 169.254.1.1 and destination 169.254.1.0 unless
  `bfd_src_ip` / `bfd_dst_ip` say otherwise, UDP destination 3784 and a
  source port in 49152..65535 fixed per session (RFC 5881 §4), UDP checksum
  0, a 24-byte control packet without authentication.
* The tunnel key is the port's: OVN's tunnel ports carry `key=flow` and the
  frame Open vSwitch builds itself has tun_id 0, so BFD rides VNI 0 (no Geneve
  options).  OVN sets `check_tnl_key=true`, so a receiver takes a frame as BFD
  only when tun_id is 0 -- a logical port cannot forge one (no logical
  datapath has key 0).
* The receiver matches Ethernet type IPv4, IP protocol UDP, UDP destination
  3784 (and the destination MAC only if `bfd_remote_dst_mac` is set); it
  ignores the IP addresses, drops a packet whose TTL is not 255, and requires
  version 1, no A bit, Length >= 24, a non-zero Detect Mult, no M bit, a
  non-zero My Discriminator, and Your Discriminator either its own or zero
  while the sender is Down/AdminDown.
* Open vSwitch defaults: min_tx 100 ms (its floor), min_rx 1000 ms, mult 3
  (3 s detection); OVN passes `bfd-min-rx`, `bfd-min-tx`, `bfd-mult`,
  `bfd-decay-min-rx` from SB_Global options.  While a session is not Up the
  transmit interval is at least 1 s (RFC 5880 §6.8.3), jittered down by up
  to 25 %.  Intervals travel in microseconds.
* A session belongs to one tunnel *port* with a fixed remote_ip: OVN creates
  one port per remote chassis and warns that BFD does not work with
  flow-based (remote_ip=flow) tunnels.  An Open vSwitch chassis peering with
  vnet therefore needs a per-peer tunnel port with `bfd:enable=true`; vnet's
  own side stays flow-based (`vnet.datapath.bfd.Monitor` tells sessions
  apart by discriminator and outer source).  Beside Open vSwitch's own
  flow-based port, a per-peer port with `key=0` (not `key=flow`) takes only
  that peer's key-0 frames -- its BFD -- while overlay frames with other keys
  from the same peer still come in on the flow-based port (Open vSwitch's
  tunnel lookup prefers an exact key and remote_ip, then falls back).

This module is the codec only: `parse` checks everything RFC 5880 §6.8.6 lets
a receiver check without session state and raises `BfdError` naming the field
otherwise; `build` refuses out-of-range fields the same way.  `frame` /
`parse_frame` wrap and unwrap the inner Ethernet/IPv4/UDP headers above.  The
authentication section (A bit) is kept raw; sessions refuse it.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import NamedTuple

from . import ethernet, ipv4
from .checksum import internet_checksum

__all__ = [
    "BFD_DST_IP",
    "BFD_LEN",
    "BFD_MAC",
    "BFD_PORT",
    "BFD_SRC_IP",
    "BFD_TOS",
    "BFD_TTL",
    "Bfd",
    "BfdError",
    "BfdFrame",
    "Diag",
    "State",
    "build",
    "frame",
    "is_bfd",
    "parse",
    "parse_frame",
]

BFD_PORT = 3784
BFD_LEN = 24
BFD_MAC = 0x002320000001
BFD_SRC_IP = 0xA9FE0101  # 169.254.1.1
BFD_DST_IP = 0xA9FE0100  # 169.254.1.0
BFD_TTL = 255
BFD_TOS = 0x18
VERSION = 1
_HDR = struct.Struct("!BBBBIIIII")


class State(IntEnum):
    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3

    @property
    def label(self) -> str:
        return self.name.lower()


class Diag(IntEnum):
    NONE = 0
    EXPIRED = 1  # Control Detection Time Expired
    ECHO_FAILED = 2
    NEIGHBOR_DOWN = 3  # Neighbor Signaled Session Down
    FWD_RESET = 4
    PATH_DOWN = 5
    CPATH_DOWN = 6
    ADMIN_DOWN = 7
    RCPATH_DOWN = 8

    @property
    def label(self) -> str:
        return self.name.lower()


class BfdError(ValueError):
    """A control packet (or its frame) that must be discarded; `field` says which check failed."""

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        super().__init__(f"bfd {field}: {detail}")


class Bfd(NamedTuple):
    """One control packet; intervals in microseconds, as on the wire."""

    state: State
    my_disc: int
    your_disc: int = 0
    diag: Diag = Diag.NONE
    detect_mult: int = 3
    desired_min_tx: int = 1_000_000
    required_min_rx: int = 1_000_000
    required_min_echo_rx: int = 0
    poll: bool = False
    final: bool = False
    cpi: bool = False  # control plane independent
    demand: bool = False
    multipoint: bool = False
    auth: bytes = b""  # the raw authentication section; non-empty means the A bit
    version: int = VERSION


def _u32(name: str, value: int) -> None:
    if not 0 <= value < 1 << 32:
        raise BfdError(name, f"{value} out of range 0..4294967295")


def build(p: Bfd) -> bytes:
    """The wire bytes of `p` (24 bytes, more with an authentication section)."""
    if not 0 <= p.version < 8:
        raise BfdError("version", f"{p.version} out of range 0..7")
    if not 0 <= p.diag < 32:
        raise BfdError("diag", f"{int(p.diag)} out of range 0..31")
    if not 1 <= p.detect_mult < 256:
        raise BfdError("detect_mult", f"{p.detect_mult} out of range 1..255")
    if p.poll and p.final:
        raise BfdError("flags", "poll and final both set (RFC 5880 §6.5)")
    for name in (
        "my_disc",
        "your_disc",
        "desired_min_tx",
        "required_min_rx",
        "required_min_echo_rx",
    ):
        _u32(name, getattr(p, name))
    if p.my_disc == 0:
        raise BfdError("my_disc", "must not be zero")
    if p.auth and (len(p.auth) < 2 or p.auth[1] != len(p.auth)):
        raise BfdError("auth", "section length byte must equal its size (at least 2)")
    length = BFD_LEN + len(p.auth)
    if length > 255:
        raise BfdError("auth", f"packet of {length} bytes exceeds 255")
    flags = (
        (int(State(p.state)) << 6)
        | (p.poll << 5)
        | (p.final << 4)
        | (p.cpi << 3)
        | (bool(p.auth) << 2)
        | (p.demand << 1)
        | int(p.multipoint)
    )
    return (
        _HDR.pack(
            (p.version << 5) | int(p.diag),
            flags,
            p.detect_mult,
            length,
            p.my_disc,
            p.your_disc,
            p.desired_min_tx,
            p.required_min_rx,
            p.required_min_echo_rx,
        )
        + p.auth
    )


def parse(buf: bytes | bytearray | memoryview, off: int = 0) -> Bfd:
    """A control packet from a UDP payload; anything RFC 5880 §6.8.6 discards raises `BfdError`."""
    avail = len(buf) - off
    if avail < BFD_LEN:
        raise BfdError("length", f"{avail} bytes, a control packet has at least {BFD_LEN}")
    vd, flags, mult, length, my, your, tx, rx, echo = _HDR.unpack_from(buf, off)
    version = vd >> 5
    if version != VERSION:
        raise BfdError("version", f"{version}, only {VERSION} is known")
    auth_bit = bool(flags & 0x04)
    need = BFD_LEN + (2 if auth_bit else 0)
    if length < need:
        raise BfdError("length", f"field says {length}, at least {need} required")
    if length > avail:
        raise BfdError("length", f"field says {length}, only {avail} bytes arrived")
    if mult == 0:
        raise BfdError("detect_mult", "zero")
    if flags & 0x01:
        raise BfdError("multipoint", "M bit set")
    if my == 0:
        raise BfdError("my_disc", "zero")
    state = State(flags >> 6)
    if your == 0 and state not in (State.DOWN, State.ADMIN_DOWN):
        raise BfdError("your_disc", f"zero while the sender is {state.label}")
    if flags & 0x20 and flags & 0x10:
        raise BfdError("flags", "poll and final both set")
    auth = b""
    if auth_bit:
        auth = bytes(buf[off + BFD_LEN : off + length])
        if auth[1] != len(auth):
            raise BfdError("auth", f"section length {auth[1]}, {len(auth)} bytes follow the header")
    return Bfd(
        state=state,
        my_disc=my,
        your_disc=your,
        # RFC 5880 §4.1: 9..31 are reserved; a receiver reads them as no diagnostic
        diag=Diag(vd & 0x1F) if (vd & 0x1F) <= Diag.RCPATH_DOWN else Diag.NONE,
        detect_mult=mult,
        desired_min_tx=tx,
        required_min_rx=rx,
        required_min_echo_rx=echo,
        poll=bool(flags & 0x20),
        final=bool(flags & 0x10),
        cpi=bool(flags & 0x08),
        demand=bool(flags & 0x02),
        multipoint=False,
        auth=auth,
        version=version,
    )


class BfdFrame(NamedTuple):
    """What `parse_frame` found around a control packet."""

    eth_src: int
    eth_dst: int
    ip_src: int
    ip_dst: int
    ttl: int
    udp_src: int
    packet: Bfd


def frame(
    p: Bfd,
    *,
    eth_src: int,
    udp_src: int,
    eth_dst: int = BFD_MAC,
    ip_src: int = BFD_SRC_IP,
    ip_dst: int = BFD_DST_IP,
) -> bytes:
    """The Ethernet frame Open vSwitch puts on a tunnel for `p` (TTL 255, UDP checksum 0)."""
    if not 49152 <= udp_src <= 65535:
        raise BfdError("udp_src", f"{udp_src} out of range 49152..65535 (RFC 5881 §4)")
    body = build(p)
    udp = struct.pack("!HHHH", udp_src, BFD_PORT, 8 + len(body), 0) + body
    ip = ipv4.build(ip_src, ip_dst, ipv4.IPPROTO_UDP, udp, ttl=BFD_TTL, dscp=BFD_TOS >> 2)
    return ethernet.build(eth_dst, eth_src, ethernet.ETH_TYPE_IPV4, ip)


def is_bfd(frame_: bytes | bytearray | memoryview) -> bool:
    """Whether a frame is one Open vSwitch would take as BFD: IPv4, UDP, destination port 3784."""
    if len(frame_) < 14 + 20 + 8 or frame_[12:14] != b"\x08\x00" or frame_[14] >> 4 != 4:
        return False
    ihl = (frame_[14] & 0xF) * 4
    if frame_[23] != ipv4.IPPROTO_UDP or len(frame_) < 14 + ihl + 8:
        return False
    return int.from_bytes(frame_[14 + ihl + 2 : 14 + ihl + 4], "big") == BFD_PORT


def parse_frame(frame_: bytes | bytearray | memoryview) -> BfdFrame:
    """Headers and control packet of a BFD frame; `BfdError` for a frame that is not one or is bad."""
    if not is_bfd(frame_):
        raise BfdError("frame", "not IPv4/UDP to port 3784")
    try:
        ip, off = ipv4.parse(frame_, 14)
    except ValueError as e:
        raise BfdError("ipv4", str(e)) from None
    if internet_checksum(frame_[14:off]) != 0:
        raise BfdError("ipv4", "bad header checksum")
    if ip.is_fragment:
        raise BfdError("ipv4", "fragment")
    udp_src, _dst, ulen = struct.unpack_from("!HHH", frame_, off)
    end = 14 + ip.total_length
    if ulen < 8 or off + ulen > end:
        raise BfdError("udp", f"length {ulen} does not fit the IP packet")
    pkt = parse(bytes(frame_[off + 8 : off + ulen]))
    return BfdFrame(
        int.from_bytes(frame_[6:12], "big"),
        int.from_bytes(frame_[0:6], "big"),
        ip.src,
        ip.dst,
        ip.ttl,
        udp_src,
        pkt,
    )

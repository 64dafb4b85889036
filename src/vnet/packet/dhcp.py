"""DHCPv4 server answers (RFC 2131, options RFC 2132, classless routes RFC 3442).

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +---------------+---------------+---------------+---------------+
   |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |
   +---------------+---------------+---------------+---------------+
   |                            xid (4)                            |
   +-------------------------------+-------------------------------+
   |           secs (2)            |           flags (2)           |
   +-------------------------------+-------------------------------+
   |  ciaddr (4) | yiaddr (4) | siaddr (4) | giaddr (4)            |
   +---------------------------------------------------------------+
   |  chaddr (16) | sname (64) | file (128)                        |
   +---------------------------------------------------------------+
   |  magic cookie 99.130.83.99 | options (type, length, data)...  |
   +---------------------------------------------------------------+

Pure, no I/O: `parse` reads a client's BOOTP payload (the UDP payload,
port 68 -> 67), `decide` says what a server that owns exactly one address
for that client answers, `build` writes the reply's payload and `frame`
wraps it in Ethernet/IPv4/UDP, addressed as RFC 2131 4.1 says.

The decision (RFC 2131 4.3), for a client whose one address is `lease`:
- DISCOVER -> OFFER.
- REQUEST with a server identifier (SELECTING): ACK when it names this
  server and asks for the lease's address; silence when it chose another
  server; NAK when it names us but asks for another address.
- REQUEST without a server identifier and without ciaddr (INIT-REBOOT): ACK
  when the requested address is the lease's, else NAK.
- REQUEST with ciaddr (RENEWING, unicast, or REBINDING, broadcast): ACK when
  ciaddr is the lease's address, else NAK.
- INFORM -> ACK with configuration but no address and no lease time.
- RELEASE, DECLINE -> nothing (the caller counts them).
- No lease for the client -> nothing (another server may know it).

The reply carries: subnet mask (1), router (3, only when no classless
routes are sent), DNS servers (6), interface MTU (26), lease time (51),
renewal T1 = lease/2 (58), rebinding T2 = 7/8 lease (59), server identifier
(54), and classless static routes (121, RFC 3442) when the subnet has host
routes -- with the default route among them, since a client that gets 121
ignores option 3 (RFC 3442 p.5).  An option longer than 255 bytes is split
into several of the same code (RFC 3396).  The payload is padded to the
BOOTP minimum of 300 bytes.  Option overload (52, options in sname/file) is
not read: a client asking for an address sends its few options in the
options field.

Malformed input raises `DhcpError` naming what is wrong; nothing else escapes.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from . import ethernet, ipv4, udp

__all__ = [
    "ACK",
    "CLIENT_PORT",
    "DECLINE",
    "DISCOVER",
    "INFORM",
    "NAK",
    "OFFER",
    "RELEASE",
    "REQUEST",
    "SERVER_PORT",
    "DhcpError",
    "Lease",
    "Message",
    "build",
    "classless_routes",
    "decide",
    "frame",
    "parse",
]

CLIENT_PORT = 68
SERVER_PORT = 67
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
BOOTREQUEST, BOOTREPLY = 1, 2
MAGIC = b"\x63\x82\x53\x63"
FLAG_BROADCAST = 0x8000

OPT_PAD, OPT_END = 0, 255
OPT_MASK, OPT_ROUTER, OPT_DNS, OPT_MTU = 1, 3, 6, 26
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_MSG_TYPE, OPT_SERVER_ID = 50, 51, 53, 54
OPT_T1, OPT_T2, OPT_CLIENT_ID, OPT_CLASSLESS_ROUTES = 58, 59, 61, 121

_FIXED = struct.Struct("!BBBBIHHIIII16s64s128s")
_FIXED_LEN = _FIXED.size  # 236
_MIN_PAYLOAD = 300
_BROADCAST_MAC = 0xFFFFFFFFFFFF
_BROADCAST_IP = 0xFFFFFFFF


class DhcpError(ValueError):
    """A client message this server cannot read; the text names the field."""


class Message(NamedTuple):
    """A client's message: the fields a server decides on, plus all options raw."""

    op: int
    xid: int
    secs: int
    flags: int
    ciaddr: int
    giaddr: int
    chaddr: int  # the client's MAC (htype 1, hlen 6)
    msg_type: int
    requested_ip: int  # option 50, 0 when absent
    server_id: int  # option 54, 0 when absent
    options: dict[int, bytes]

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & FLAG_BROADCAST)


class Lease(NamedTuple):
    """What the server hands one client, all from the model."""

    address: int
    prefix_len: int
    server_id: int  # the subnet's gateway address (the router's)
    router: int = 0  # default gateway, 0 for none
    dns: tuple[int, ...] = ()
    mtu: int = 0  # 0: no option 26
    lease_time: int = 12 * 3600
    routes: tuple[tuple[int, int, int], ...] = ()  # (prefix, length, next hop)


def parse(buf: bytes | bytearray | memoryview, off: int = 0) -> Message:
    """A client's BOOTP/DHCP message starting at `off` (the UDP payload)."""
    data = bytes(buf[off:])
    if len(data) < _FIXED_LEN + len(MAGIC):
        raise DhcpError(f"message: {len(data)} bytes, at least {_FIXED_LEN + 4} needed")
    op, htype, hlen, _hops, xid, secs, flags, ciaddr, _yi, _si, giaddr, chaddr, _sn, _fi = (
        _FIXED.unpack_from(data)
    )
    if op != BOOTREQUEST:
        raise DhcpError(f"op: {op}, a client sends {BOOTREQUEST} (BOOTREQUEST)")
    if htype != 1 or hlen != 6:
        raise DhcpError(f"htype/hlen: {htype}/{hlen}, only Ethernet (1/6) is served")
    if data[_FIXED_LEN : _FIXED_LEN + 4] != MAGIC:
        raise DhcpError("magic cookie: not 99.130.83.99")
    options = _parse_options(data, _FIXED_LEN + 4)
    mt = options.get(OPT_MSG_TYPE, b"")
    if len(mt) != 1 or not DISCOVER <= mt[0] <= INFORM:
        raise DhcpError(f"option 53 (message type): {mt.hex() or 'absent'}")
    return Message(
        op,
        xid,
        secs,
        flags,
        ciaddr,
        giaddr,
        int.from_bytes(chaddr[:6], "big"),
        mt[0],
        _addr_option(options, OPT_REQUESTED_IP),
        _addr_option(options, OPT_SERVER_ID),
        options,
    )


def _parse_options(data: bytes, o: int) -> dict[int, bytes]:
    """Options to END (or the data's end); repeated codes are concatenated (RFC 3396)."""
    options: dict[int, bytes] = {}
    while o < len(data):
        code = data[o]
        if code == OPT_END:
            break
        if code == OPT_PAD:
            o += 1
            continue
        if o + 2 > len(data) or o + 2 + data[o + 1] > len(data):
            raise DhcpError(f"option {code}: runs past the message's end")
        n = data[o + 1]
        options[code] = options.get(code, b"") + data[o + 2 : o + 2 + n]
        o += 2 + n
    return options


def _addr_option(options: dict[int, bytes], code: int) -> int:
    v = options.get(code)
    if v is None:
        return 0
    if len(v) != 4:
        raise DhcpError(f"option {code}: {len(v)} bytes, an address has 4")
    return int.from_bytes(v, "big")


def decide(msg: Message, lease: Lease | None) -> int | None:
    """The reply's message type (OFFER, ACK, NAK) or None for no reply."""
    if lease is None or msg.msg_type in (RELEASE, DECLINE):
        return None
    t = msg.msg_type
    if t == DISCOVER:
        return OFFER
    if t == INFORM:
        return ACK
    if t != REQUEST:
        return None  # a server's message type sent by a client
    if msg.server_id:  # SELECTING
        if msg.server_id != lease.server_id:
            return None
        return ACK if msg.requested_ip == lease.address else NAK
    if msg.ciaddr:  # RENEWING / REBINDING
        return ACK if msg.ciaddr == lease.address else NAK
    return ACK if msg.requested_ip == lease.address else NAK  # INIT-REBOOT


def classless_routes(
    routes: tuple[tuple[int, int, int], ...] | list[tuple[int, int, int]],
) -> bytes:
    """Option 121's data: width, the significant octets of the prefix, the router."""
    out = bytearray()
    for prefix, length, nexthop in routes:
        if not 0 <= length <= 32:
            raise ValueError(f"route prefix length: {length}")
        n = (length + 7) // 8
        out.append(length)
        out += prefix.to_bytes(4, "big")[:n]
        out += nexthop.to_bytes(4, "big")
    return bytes(out)


def _option(code: int, value: bytes) -> bytes:
    """One option, split into pieces of at most 255 bytes (RFC 3396)."""
    if not value:
        return bytes((code, 0))
    out = bytearray()
    for i in range(0, len(value), 255):
        piece = value[i : i + 255]
        out += bytes((code, len(piece))) + piece
    return bytes(out)


def _addrs(values: tuple[int, ...] | list[int]) -> bytes:
    return b"".join(v.to_bytes(4, "big") for v in values)


def build(msg: Message, kind: int, lease: Lease) -> bytes:
    """The server's reply (UDP payload) of type `kind` to `msg`, configured from `lease`."""
    yiaddr = lease.address if kind in (OFFER, ACK) and msg.msg_type != INFORM else 0
    ciaddr = msg.ciaddr if kind == ACK else 0
    fixed = _FIXED.pack(
        BOOTREPLY,
        1,
        6,
        0,
        msg.xid,
        0,
        msg.flags & FLAG_BROADCAST,
        ciaddr,
        yiaddr,
        0,
        msg.giaddr,
        msg.chaddr.to_bytes(6, "big") + b"\x00" * 10,
        b"",
        b"",
    )
    opts = bytearray(_option(OPT_MSG_TYPE, bytes((kind,))))
    opts += _option(OPT_SERVER_ID, lease.server_id.to_bytes(4, "big"))
    if kind != NAK:
        if msg.msg_type != INFORM:
            t = lease.lease_time
            opts += _option(OPT_LEASE_TIME, t.to_bytes(4, "big"))
            opts += _option(OPT_T1, (t // 2).to_bytes(4, "big"))
            opts += _option(OPT_T2, (t * 7 // 8).to_bytes(4, "big"))
        mask = (0xFFFFFFFF << (32 - lease.prefix_len)) & 0xFFFFFFFF
        opts += _option(OPT_MASK, mask.to_bytes(4, "big"))
        if lease.routes:
            routes = list(lease.routes)
            if lease.router and not any(length == 0 for _, length, _ in routes):
                routes.insert(0, (0, 0, lease.router))
            opts += _option(OPT_CLASSLESS_ROUTES, classless_routes(routes))
        elif lease.router:
            opts += _option(OPT_ROUTER, lease.router.to_bytes(4, "big"))
        if lease.dns:
            opts += _option(OPT_DNS, _addrs(lease.dns))
        if lease.mtu:
            opts += _option(OPT_MTU, lease.mtu.to_bytes(2, "big"))
    opts.append(OPT_END)
    payload = fixed + MAGIC + bytes(opts)
    return payload + b"\x00" * max(0, _MIN_PAYLOAD - len(payload))


def frame(msg: Message, kind: int, lease: Lease, server_mac: int) -> bytes:
    """The reply as an Ethernet frame from the server (`server_mac`, the server
    identifier, port 67) to the client (port 68), addressed per RFC 2131 4.1:
    to ciaddr when the client has one (renewing); broadcast for a NAK or when
    the client set the broadcast bit; else to yiaddr at chaddr."""
    payload = build(msg, kind, lease)
    if msg.ciaddr and kind != NAK:
        ip_dst, mac_dst = msg.ciaddr, msg.chaddr
    elif kind == NAK or msg.broadcast:
        ip_dst, mac_dst = _BROADCAST_IP, _BROADCAST_MAC
    else:
        ip_dst, mac_dst = lease.address, msg.chaddr
    src = lease.server_id
    dgram = udp.build(SERVER_PORT, CLIENT_PORT, payload, ip_src=src, ip_dst=ip_dst)
    packet = ipv4.build(src, ip_dst, 17, dgram, ttl=64)
    return ethernet.build(mac_dst, server_mac, 0x0800, packet)

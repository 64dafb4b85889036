"""DHCPv6 server answers (RFC 8415; DNS servers option RFC 3646).

    0                   1                   2                   3
    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |    msg-type   |               transaction-id                  |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |          option-code          |           option-len          |
   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
   |                  option-data (option-len octets)  ...         |

IA_NA (3):   IAID(4) | T1(4) | T2(4) | options (IA Address 5, Status 13)
IA Address (5): address(16) | preferred lifetime(4) | valid lifetime(4) | options
Status Code (13): status-code(2) | message (UTF-8)

Pure, no I/O: `parse` reads a client's message (the UDP payload, port
546 -> 547), `decide` says which reply is due from a server that owns at
most one address for the client (none on a stateless subnet), `build`
writes it and `frame` wraps it in Ethernet/IPv6/UDP from the server's
link-local address to the client's source address (RFC 8415 18.3).

The decision (RFC 8415 18.3), for a client whose configuration is `lease`:
- Solicit -> Advertise, or Reply when the client asked for rapid commit
  (option 14, echoed back).
- Request, Renew (naming this server, option 2), Rebind -> Reply with
  the IA_NA holding the lease's address.
- Confirm -> Reply with status Success when every address the client
  confirms is the lease's, NotOnLink otherwise.
- Release, Decline -> Reply with status Success.
- Information-request -> Reply with the DNS servers only.
- A message naming another server, one without a Client Identifier
  (except Information-request), or one of a server's types -> nothing.
An IA_NA the client sends is answered with its own IAID; T1 = 1/2 and
T2 = 4/5 of the lease time, the address preferred and valid for it.
The server's DUID is a DUID-LL (type 3) of its MAC.

Malformed input raises `DhcpError` naming what is wrong.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from . import ethernet, ipv6, udp
from .dhcp import DhcpError

__all__ = [
    "ADVERTISE",
    "CLIENT_PORT",
    "CONFIRM",
    "DECLINE",
    "INFORMATION_REQUEST",
    "REBIND",
    "RELEASE",
    "RENEW",
    "REPLY",
    "REQUEST",
    "SERVERS_GROUP",
    "SERVER_PORT",
    "SOLICIT",
    "DhcpError",
    "Lease6",
    "Message6",
    "build",
    "decide",
    "duid_ll",
    "frame",
    "link_local",
    "parse",
]

CLIENT_PORT, SERVER_PORT = 546, 547
SERVERS_GROUP = 0xFF020000000000000000000000010002  # ff02::1:2
SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE = range(1, 10)
INFORMATION_REQUEST = 11
OPT_CLIENTID, OPT_SERVERID, OPT_IA_NA, OPT_IAADDR = 1, 2, 3, 5
OPT_STATUS, OPT_RAPID_COMMIT, OPT_DNS = 13, 14, 23
STATUS_SUCCESS, STATUS_NOT_ON_LINK = 0, 4
_CLIENT_TYPES = {SOLICIT, REQUEST, CONFIRM, RENEW, REBIND, RELEASE, DECLINE, INFORMATION_REQUEST}
_OPT = struct.Struct("!HH")


class Message6(NamedTuple):
    msg_type: int
    xid: int
    client_id: bytes  # b"" when absent
    server_id: bytes  # b"" when absent
    iaids: tuple[int, ...]  # the IA_NAs' IAIDs, in order
    addresses: tuple[int, ...]  # IA Address options inside the IA_NAs
    rapid_commit: bool


class Lease6(NamedTuple):
    """One client's configuration from the model; address 0 on a stateless subnet."""

    address: int
    dns: tuple[int, ...] = ()
    lease_time: int = 12 * 3600


def _options(data: bytes, o: int, end: int, where: str) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    while o < end:
        if end - o < 4:
            raise DhcpError(f"{where}: {end - o} bytes left, an option header has 4")
        code, n = _OPT.unpack_from(data, o)
        if o + 4 + n > end:
            raise DhcpError(f"{where}: option {code} of length {n} runs past the end")
        out.append((code, data[o + 4 : o + 4 + n]))
        o += 4 + n
    return out


def parse(buf: bytes | bytearray | memoryview, off: int = 0) -> Message6:
    """A client's DHCPv6 message starting at `off` (the UDP payload)."""
    data = bytes(buf[off:])
    if len(data) < 4:
        raise DhcpError(f"message: {len(data)} bytes, at least 4 needed")
    msg_type, xid = data[0], int.from_bytes(data[1:4], "big")
    if msg_type not in _CLIENT_TYPES:
        raise DhcpError(f"msg-type: {msg_type} is no client message this server answers")
    client_id = server_id = b""
    iaids: list[int] = []
    addresses: list[int] = []
    rapid = False
    for code, value in _options(data, 4, len(data), "options"):
        if code == OPT_CLIENTID:
            client_id = value
        elif code == OPT_SERVERID:
            server_id = value
        elif code == OPT_RAPID_COMMIT:
            rapid = True
        elif code == OPT_IA_NA:
            if len(value) < 12:
                raise DhcpError(f"option 3 (IA_NA): {len(value)} bytes, at least 12 needed")
            iaids.append(int.from_bytes(value[:4], "big"))
            for sub, sv in _options(value, 12, len(value), "IA_NA"):
                if sub == OPT_IAADDR:
                    if len(sv) < 24:
                        raise DhcpError(f"option 5 (IA Address): {len(sv)} bytes, at least 24")
                    addresses.append(int.from_bytes(sv[:16], "big"))
    return Message6(msg_type, xid, client_id, server_id, tuple(iaids), tuple(addresses), rapid)


def duid_ll(mac: int) -> bytes:
    """DUID-LL (RFC 8415 11.4): type 3, hardware type 1 (Ethernet), the MAC."""
    return struct.pack("!HH", 3, 1) + mac.to_bytes(6, "big")


def link_local(mac: int) -> int:
    """fe80::/64 with the modified EUI-64 interface identifier of `mac` (RFC 4291 2.5.1)."""
    b = mac.to_bytes(6, "big")
    iid = bytes((b[0] ^ 0x02,)) + b[1:3] + b"\xff\xfe" + b[3:]
    return (0xFE80 << 112) | int.from_bytes(iid, "big")


def decide(msg: Message6, server_duid: bytes) -> int | None:
    """The reply's type (ADVERTISE or REPLY), or None when this server stays silent."""
    if msg.server_id and msg.server_id != server_duid:
        return None
    if msg.msg_type != INFORMATION_REQUEST and not msg.client_id:
        return None
    if msg.msg_type in (REQUEST, RENEW, RELEASE, DECLINE) and not msg.server_id:
        return None  # RFC 8415 16.4/16.6/16.8/16.9: these must name the server
    if msg.msg_type == SOLICIT:
        return REPLY if msg.rapid_commit else ADVERTISE
    return REPLY


def _opt(code: int, value: bytes = b"") -> bytes:
    return _OPT.pack(code, len(value)) + value


def _status(code: int, text: str) -> bytes:
    return _opt(OPT_STATUS, code.to_bytes(2, "big") + text.encode())


def build(msg: Message6, kind: int, lease: Lease6, server_duid: bytes) -> bytes:
    """The reply (UDP payload) of type `kind` to `msg`."""
    out = bytearray((kind,)) + msg.xid.to_bytes(3, "big")
    out += _opt(OPT_SERVERID, server_duid)
    if msg.client_id:
        out += _opt(OPT_CLIENTID, msg.client_id)
    t = msg.msg_type
    if t == SOLICIT and kind == REPLY:
        out += _opt(OPT_RAPID_COMMIT)
    if t in (SOLICIT, REQUEST, RENEW, REBIND) and lease.address:
        life = lease.lease_time
        for iaid in msg.iaids:
            addr = _opt(
                OPT_IAADDR, struct.pack("!16sII", lease.address.to_bytes(16, "big"), life, life)
            )
            out += _opt(OPT_IA_NA, struct.pack("!III", iaid, life // 2, life * 4 // 5) + addr)
    elif t == CONFIRM:
        ok = bool(msg.addresses) and all(a == lease.address for a in msg.addresses)
        out += (
            _status(STATUS_SUCCESS, "on link") if ok else _status(STATUS_NOT_ON_LINK, "not on link")
        )
    elif t in (RELEASE, DECLINE):
        out += _status(STATUS_SUCCESS, "released" if t == RELEASE else "declined")
    if lease.dns and t not in (RELEASE, DECLINE):
        out += _opt(OPT_DNS, b"".join(a.to_bytes(16, "big") for a in lease.dns))
    return bytes(out)


def frame(
    msg: Message6,
    kind: int,
    lease: Lease6,
    server_mac: int,
    client_mac: int,
    client_ip: int,
) -> bytes:
    """The reply from the server's link-local address and `server_mac` to the
    client at `client_mac`/`client_ip` (the request's source), port 547 -> 546."""
    payload = build(msg, kind, lease, duid_ll(server_mac))
    src = link_local(server_mac)
    dgram = udp.build(SERVER_PORT, CLIENT_PORT, payload, ip_src=src, ip_dst=client_ip, ipv6=True)
    packet = ipv6.build(src, client_ip, 17, dgram, hop_limit=255)
    return ethernet.build(client_mac, server_mac, 0x86DD, packet)

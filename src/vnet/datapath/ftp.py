"""The FTP helper of the connection tracker (`ct(alg=ftp)`): what a control connection
announces, the data connection to expect, and the text to rewrite under NAT.

FTP moves files over a second TCP connection whose address and port travel as
text on the control connection: the client's `PORT h1,h2,h3,h4,p1,p2` (RFC 959)
or `EPRT |af|addr|port|` (RFC 2428) for an active transfer, where the server
connects back; the server's `227 ... (h1,h2,h3,h4,p1,p2)` reply to PASV or
`229 ... (|||port|)` reply to EPSV for a passive one, where the client connects
again.  A stateful firewall that only lets connections start from the client
refuses the active data connection, and a NAT that rewrites the control
connection's addresses leaves the announced address untranslated.  Linux's
nf_conntrack_ftp and nf_nat_ftp, and Open vSwitch's userspace conntrack
(`handle_ftp_ctl` in lib/conntrack.c), read the text; so does this module.

`parse` reads one control segment: the command or reply must start the
segment's payload and its line must end inside the segment, as Open vSwitch
reads it (it never joins segments); a cut line is `Incomplete` and the segment
passes as it is.  PORT and EPRT count only from the client (the connection's
original direction), 227 and 229 only from the server, as Linux checks.  Both
address families take EPRT and EPSV (Linux's reading; Open vSwitch reads
them on IPv6 only), PORT and 227 are IPv4's.  A malformed command is a
`BadCommand` naming the token; so is an address that is neither end of the
control connection (Open vSwitch's guard against the FTP bounce: a client
naming a third host).

`expect` turns a command into the expected data connection, Open vSwitch's
and Linux's way: its tuple without the source port (unknown until it comes),
as the tracker will see it arrive -- for an active transfer from the server
to the address the server was told, for a passive one from the client to the
server it knows -- and the reply-direction addresses it must get so that a
NATed control connection's data connection is translated the same way
(Linux's `nf_nat_follow_master`: the data connection's replies come from and
go to where the control connection's do).  Ports are kept: only the address
text is rewritten.

`replace` writes the translated address text into the frame.  The payload's
length may change ("10,0,0,1" -> "192,168,100,200"), so the IP length field
follows and the TCP checksum is updated incrementally over the changed tail
(a segment that arrived with a bad checksum leaves with one).  The peer's
sequence space then differs from the sender's by the difference: `SeqAdj`
keeps it per direction as Linux's nf_conntrack_seqadj does (the position of
the last change and the offsets before and after it), and `adjust_seq` and
`adjust_ack` apply it to every later segment: the sequence number in that
direction, the acknowledgement and SACK blocks in the other.  A
retransmission of the changed segment gets the offset from before it, and is
rewritten again.

Pure: bytes and tuples in, bytes and tuples out; the tracker keeps the state.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import NamedTuple

from ..packet.checksum import internet_checksum, update_word

__all__ = [
    "EXPECT_TIMEOUT",
    "FTP_PORT",
    "MAX_LINE",
    "BadCommand",
    "Command",
    "Edit",
    "Expectation",
    "FtpError",
    "Incomplete",
    "SeqAdj",
    "adjust_ack",
    "adjust_seq",
    "apply",
    "expect",
    "parse",
    "payload_span",
    "replace",
    "rewrite",
]

FTP_PORT = 21
EXPECT_TIMEOUT = 300.0  # seconds an expectation waits (Linux's FTP helper: 5 minutes)
MAX_LINE = 512  # a command line longer than this is not read (RFC 959 servers' limit)
_M32 = 0xFFFFFFFF

Tuple = tuple[int, int, int, int, int, int, int]  # zone, version, proto, src, dst, sport, dport


class FtpError(ValueError):
    """A control segment the helper cannot read; `reason` is the tracker's counter."""

    reason = "ftp_invalid"


class BadCommand(FtpError):
    """A PORT, EPRT, 227 or 229 line that is malformed or names a forbidden address."""


class Incomplete(FtpError):
    """A command whose line does not end in this segment (not joined, as Open vSwitch)."""

    reason = "ftp_partial"


class Command(NamedTuple):
    verb: str  # PORT | EPRT (the client's) | 227 | 229 (the server's replies)
    addr: int | None  # the announced address; None for 229 (the control server's)
    version: int  # the address' family, 4 or 6 (0 for 229)
    port: int
    span: tuple[int, int]  # where the address text lies in the payload (empty for 229)

    @property
    def passive(self) -> bool:
        return self.verb in ("227", "229")


class Expectation(NamedTuple):
    """The data connection a command announces, as the tracker will see it arrive."""

    key: tuple[int, int, int, int, int, int]  # zone, version, proto, src, dst, dport
    reply_src: int  # where its replies must come from (the translation it follows)
    reply_dst: int  # and go to


# -- reading ------------------------------------------------------------------------------
def parse(payload: bytes | bytearray | memoryview, reply: bool) -> Command | None:
    """The data connection one control segment announces, or None if it announces none.

    `reply`: the segment comes from the server.  Raises `Incomplete` for a command
    whose line does not end in the segment and `BadCommand` for a malformed one."""
    head = bytes(payload[:4]).upper()
    if reply:
        if head[:3] not in (b"227", b"229") or head[3:4] not in (b" ", b"-"):
            return None
    elif head not in (b"PORT", b"EPRT"):
        return None
    data = bytes(payload[:MAX_LINE])
    end = data.find(b"\n")
    if end < 0:
        raise Incomplete(f"{head.decode('ascii', 'replace')}: the line does not end here")
    line = data[:end].rstrip(b"\r")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise BadCommand(f"{head.decode('ascii', 'replace')}: not ASCII text") from None
    if head == b"PORT":
        return _port("PORT", text, 4)
    if head == b"EPRT":
        return _eprt(text)
    if head[:3] == b"227":
        i = next((i for i in range(4, len(text)) if text[i].isdigit()), -1)
        if i < 0:
            raise BadCommand("227: no address in the reply")
        return _port("227", text, i)
    return _epsv(text)


def _number(tok: str, what: str, verb: str, top: int) -> int:
    if not tok.isdigit() or len(tok) > len(str(top)) or int(tok) > top:
        raise BadCommand(f"{verb}: {what} {tok!r} is not a number from 0 to {top}")
    return int(tok)


def _port(verb: str, text: str, start: int) -> Command:
    """h1,h2,h3,h4,p1,p2 from `start` (the rest of the line may follow: `).` etc.)."""
    if verb == "PORT" and text[4:5] != " ":
        raise BadCommand("PORT: no space after the command")
    while start < len(text) and text[start] == " ":
        start += 1
    i = start
    while i < len(text) and (text[i].isdigit() or text[i] == ","):
        i += 1
    toks = text[start:i].split(",")
    if len(toks) != 6:
        raise BadCommand(f"{verb}: {text[start:i]!r} is not h1,h2,h3,h4,p1,p2")
    if verb == "PORT" and text[i:].strip():
        raise BadCommand(f"PORT: {text[i:].strip()!r} after the address")
    octets = [_number(t, "number", verb, 255) for t in toks]
    port = octets[4] << 8 | octets[5]
    if not port:
        raise BadCommand(f"{verb}: port 0")
    addr = int.from_bytes(bytes(octets[:4]), "big")
    comma = start + sum(len(t) + 1 for t in toks[:4]) - 1  # the comma after h4
    return Command(verb, addr, 4, port, (start, comma))


def _eprt(text: str) -> Command:
    """EPRT |af|addr|port| (any delimiter from ! to ~, RFC 2428)."""
    rest = text[4:]
    if not rest.startswith(" ") or len(rest.strip()) < 2:
        raise BadCommand("EPRT: no argument")
    start = 5 + (len(rest) - 1 - len(rest[1:].lstrip(" ")))
    delim = text[start]
    if not "!" <= delim <= "~" or delim.isalnum():
        raise BadCommand(f"EPRT: {delim!r} is not a delimiter")
    parts = text[start:].rstrip(" ").split(delim)
    if len(parts) != 5 or parts[0] or parts[4]:
        raise BadCommand(
            f"EPRT: {text[start:].strip()!r} is not {delim}af{delim}addr{delim}port{delim}"
        )
    af, addr_text, port_text = parts[1:4]
    if af not in ("1", "2"):
        raise BadCommand(f"EPRT: address family {af!r} (1: IPv4, 2: IPv6)")
    version = 4 if af == "1" else 6
    try:
        ip = ipaddress.ip_address(addr_text)
    except ValueError:
        raise BadCommand(f"EPRT: {addr_text!r} is not an address") from None
    if ip.version != version:
        raise BadCommand(f"EPRT: {addr_text!r} is not an IPv{version} address")
    port = _number(port_text, "port", "EPRT", 65535)
    if not port:
        raise BadCommand("EPRT: port 0")
    a = start + 1 + len(af) + 1
    return Command("EPRT", int(ip), version, port, (a, a + len(addr_text)))


def _epsv(text: str) -> Command:
    """229 ... (|||port|) -- the server's address is the control connection's."""
    i = text.find("(")
    if i < 0 or i + 4 > len(text):
        raise BadCommand("229: no (|||port|) in the reply")
    delim = text[i + 1]
    if not "!" <= delim <= "~" or delim.isalnum() or text[i + 2 : i + 4] != delim * 2:
        raise BadCommand(f"229: {text[i:]!r} is not (|||port|)")
    j = text.find(delim, i + 4)
    if j < 0:
        raise BadCommand(f"229: {text[i:]!r} is not (|||port|)")
    port = _number(text[i + 4 : j], "port", "229", 65535)
    if not port:
        raise BadCommand("229: port 0")
    return Command("229", None, 0, port, (i + 4, i + 4))


# -- the data connection ------------------------------------------------------------------
def expect(cmd: Command, orig: Tuple, reply: Tuple) -> tuple[Expectation, int | None]:
    """The expectation `cmd` sets up on the control connection (`orig`, `reply`: its
    tuples, the reply one as translated), and the address to write into the text
    (None for 229, which names none).  A command must come the way it belongs
    (PORT/EPRT from the client, 227/229 from the server): the caller checks.

    Raises `BadCommand` when the address family is not the connection's, or the
    address is neither end of the control connection as its sender may know it."""
    z, v, _, osrc, odst = orig[:5]
    rsrc, rdst = reply[3], reply[4]
    if cmd.version and cmd.version != v:
        raise BadCommand(f"{cmd.verb}: an IPv{cmd.version} address on an IPv{v} connection")
    if cmd.passive:
        # the client connects again to the server it knows; replies come from the real one
        if cmd.addr is not None and cmd.addr not in (rsrc, odst):
            raise BadCommand(f"{cmd.verb}: {_addr_text(cmd.addr, v)} is not the server's address")
        e = Expectation((z, v, 6, osrc, odst, cmd.port), rsrc, rdst)
        return e, None if cmd.addr is None else odst
    # active: the server connects to the address it was told, the client's as translated
    if cmd.addr not in (osrc, rdst):
        raise BadCommand(f"{cmd.verb}: {_addr_text(cmd.addr or 0, v)} is not the client's address")
    return Expectation((z, v, 6, rsrc, rdst, cmd.port), osrc, odst), rdst


def _addr_text(addr: int, version: int) -> str:
    return str(ipaddress.IPv4Address(addr) if version == 4 else ipaddress.IPv6Address(addr))


def rewrite(cmd: Command, addr: int) -> bytes:
    """The text that replaces `cmd.span` to announce `addr` instead."""
    if cmd.verb in ("PORT", "227"):
        return ",".join(str(b) for b in addr.to_bytes(4, "big")).encode()
    return _addr_text(addr, cmd.version).encode()


# -- the segment --------------------------------------------------------------------------
def payload_span(frame: bytes | bytearray, l3: int, l4: int, version: int) -> tuple[int, int]:
    """Where a TCP segment's payload lies in `frame` (the IP length says where it ends:
    Ethernet padding is not data)."""
    hlen = (frame[l4 + 12] >> 4) * 4
    if version == 4:
        end = l3 + ((frame[l3 + 2] << 8) | frame[l3 + 3])
    else:
        end = l3 + 40 + ((frame[l3 + 4] << 8) | frame[l3 + 5])
    end = min(end, len(frame))
    return min(l4 + hlen, end), end


def _sum(data: bytes | bytearray) -> int:
    """One's-complement sum of `data` read as 16-bit words (not inverted)."""
    return (~internet_checksum(data)) & 0xFFFF


def replace(
    frame: bytearray,
    l3: int,
    l4: int,
    version: int,
    start: int,
    end: int,
    text: bytes,
    partial: bool = False,
) -> int:
    """Replace `frame[start:end]` (inside the TCP payload) with `text`; fix the IP
    length (and IPv4 header checksum) and the TCP checksum.  Returns the change in
    length.  Ethernet padding after the packet is dropped.

    `partial`: the checksum is left to the device (virtio-net NEEDS_CSUM): the
    field holds the pseudo-header sum, of which only the length changes."""
    pend = payload_span(frame, l3, l4, version)[1]
    odd = (start - l4) & 1  # the changed tail's alignment in the checksummed words
    pad = b"\x00" * odd
    old_tail = bytes(frame[start:pend])
    new_tail = text + old_tail[end - start :]
    delta = len(new_tail) - len(old_tail)
    old_len = pend - l4
    new_len = old_len + delta
    if not 0 < new_len <= 0xFFFF - 60:
        raise BadCommand("the rewritten segment would not fit in one packet")
    # the TCP checksum covers the pseudo-header's length and the tail
    csum = (frame[l4 + 16] << 8) | frame[l4 + 17]
    if partial:
        s = csum + (~old_len & 0xFFFF) + new_len
    else:
        s = (~csum & 0xFFFF) + (~_sum(pad + old_tail) & 0xFFFF) + _sum(pad + new_tail)
        s += (~old_len & 0xFFFF) + new_len
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    csum = s if partial else ~s & 0xFFFF
    frame[start:] = new_tail  # drops the padding too
    struct.pack_into("!H", frame, l4 + 16, csum)
    if version == 4:
        old = (frame[l3 + 2] << 8) | frame[l3 + 3]
        struct.pack_into("!H", frame, l3 + 2, old + delta)
        ip_csum = (frame[l3 + 10] << 8) | frame[l3 + 11]
        struct.pack_into("!H", frame, l3 + 10, update_word(ip_csum, old, old + delta))
    else:
        old = (frame[l3 + 4] << 8) | frame[l3 + 5]
        struct.pack_into("!H", frame, l3 + 4, old + delta)
    return delta


# -- sequence numbers ---------------------------------------------------------------------
def _after(a: int, b: int) -> bool:
    """a comes after b in sequence space (RFC 1982 arithmetic)."""
    return 0 < ((a - b) & _M32) < 0x80000000


@dataclass(slots=True)
class SeqAdj:
    """One direction's correction, as Linux's nf_conntrack_seqadj keeps it: segments
    that start after `pos` (the last changed segment's sequence number, as its
    sender numbered it) are moved by `after`, earlier ones by `before`."""

    pos: int = 0
    before: int = 0
    after: int = 0

    def record(self, seq: int, delta: int) -> None:
        """The segment at `seq` (the sender's numbering) grew by `delta` bytes."""
        if self.before == self.after or _after(seq, self.pos):
            self.pos = seq
            self.before = self.after
            self.after += delta

    def offset(self, seq: int) -> int:
        return self.after if _after(seq, self.pos) else self.before


def _patch32(frame: bytearray, l4: int, at: int, value: int, partial: bool = False) -> None:
    """Write a 32-bit field of a TCP segment and update its checksum incrementally
    (on the 16-bit words of the segment the field overlaps; not at all when the
    device sums the segment later)."""
    if partial:
        struct.pack_into("!I", frame, at, value & _M32)
        return
    lo = at - ((at - l4) & 1)
    hi = at + 4 + ((at + 4 - l4) & 1)
    old = bytes(frame[lo:hi])
    struct.pack_into("!I", frame, at, value & _M32)
    new = bytes(frame[lo:hi])
    csum = (frame[l4 + 16] << 8) | frame[l4 + 17]
    for i in range(0, len(old), 2):
        csum = update_word(csum, (old[i] << 8) | old[i + 1], (new[i] << 8) | new[i + 1])
    struct.pack_into("!H", frame, l4 + 16, csum)


def adjust_seq(frame: bytearray, l4: int, this: SeqAdj, partial: bool = False) -> None:
    """Move the sequence number of a segment travelling the way `this` corrects."""
    (seq,) = struct.unpack_from("!I", frame, l4 + 4)
    off = this.offset(seq)
    if off:
        _patch32(frame, l4, l4 + 4, seq + off, partial)


def adjust_ack(frame: bytearray, l4: int, other: SeqAdj, partial: bool = False) -> None:
    """Move the acknowledgement (and SACK blocks) of a segment travelling against the
    way `other` corrects: back into the numbering its receiver used."""
    if not frame[l4 + 13] & 0x10:  # no ACK
        return
    (ack,) = struct.unpack_from("!I", frame, l4 + 8)
    off = other.offset((ack - other.before) & _M32)
    if off:
        _patch32(frame, l4, l4 + 8, ack - off, partial)
    hlen = (frame[l4 + 12] >> 4) * 4
    o, end = l4 + 20, min(l4 + hlen, len(frame))
    while o < end:
        kind = frame[o]
        if kind == 0:
            break
        if kind == 1:
            o += 1
            continue
        if o + 1 >= end or frame[o + 1] < 2:
            break
        n = frame[o + 1]
        if kind == 5:  # SACK: blocks of (left, right) edges
            for at in range(o + 2, min(o + n, end) - 3, 4):
                (edge,) = struct.unpack_from("!I", frame, at)
                off = other.offset((edge - other.before) & _M32)
                if off:
                    _patch32(frame, l4, at, edge - off, partial)
        o += n


# -- what the tracker asks of one segment -------------------------------------------------
class Edit(NamedTuple):
    """What the helper writes into one control segment, after NAT has translated it:
    its sequence number moved by `this`, its acknowledgement by `other` (the two
    directions' corrections as they stood), and `text` over [start, end) of the
    payload (offsets in the payload)."""

    this: SeqAdj | None = None
    other: SeqAdj | None = None
    text: tuple[int, int, bytes] | None = None


def apply(frame: bytearray, l3: int, l4: int, version: int, e: Edit, partial: bool = False) -> int:
    """Write `e` into `frame` (a TCP segment at `l4`); the change in length."""
    if e.other is not None:
        adjust_ack(frame, l4, e.other, partial)
    if e.this is not None:
        adjust_seq(frame, l4, e.this, partial)
    if e.text is None:
        return 0
    start = payload_span(frame, l3, l4, version)[0]
    a, b, text = e.text
    return replace(frame, l3, l4, version, start + a, start + b, text, partial)

"""Datapath operations: applying a decision to a frame's bytes.

Translation produces `("set", slot, value)`, `("push_vlan", ...)`, `("output",
port)` ... (see `context`); this module is the only code that turns them into
bytes.  Field rewrites patch the header in place at the offsets the flow key
recorded (shifted by any VLAN pushes or pops before them) and update the IPv4
header checksum and the TCP/UDP/ICMP checksums incrementally (RFC 1624), so a
rewrite costs the same for a 64-byte and a 64-kilobyte frame.

SCTP's checksum is a CRC32c over the whole packet (RFC 4960 appendix B), not a
sum, so a port rewrite runs it twice, as Open vSwitch does: over the packet
before and after, with the checksum field zeroed, and stores the old value
XOR both (a CRC is linear in XOR for messages of one length), so a packet
that arrived with a bad checksum leaves with one too.  The packet's end is
the IP header's length, not the frame's (Ethernet padding is no part of it);
a fragment carries only part of the packet, and its checksum is left alone.

`apply` returns what leaves the pipeline: a list of (operation, frame) for
every output, packet-in, `normal`, and conntrack request, in order.  A meter
callback that says "drop" stops the packet where the meter stands.  A
conntrack callback, if given, runs each `ct` where it stands instead: it may
rewrite the frame in place (NAT: the operations after it see the translated
bytes), stop the packet (False), or hand back an (operation, frame) to leave
with the rest, in order (a recirculation).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from crc32c import crc32c

from ..packet import flowkey as fk
from ..packet.checksum import update_bytes
from .fields import BY_INDEX

__all__ = ["ConntrackHook", "apply", "format_odp", "format_ops"]

Op = tuple[Any, ...]
# the `ct` operation, the frame as it stands there, the flow key it was decided for
ConntrackHook = Callable[[Op, bytearray, Sequence[int]], "tuple[Op, bytes] | bool"]
_TERMINAL = frozenset(("output", "controller", "normal", "ct"))

# slot -> (layer, offset in layer, width in bytes) for IPv4 frames
_L2 = {fk.ETH_DST: (0, 6), fk.ETH_SRC: (6, 6)}
_V4 = {fk.IPV4_SRC: (12, 4), fk.IPV4_DST: (16, 4), fk.IP_TTL: (8, 1)}
_V6 = {fk.IPV6_SRC: (8, 16), fk.IPV6_DST: (24, 16), fk.IP_TTL: (7, 1)}
_ARP = {
    fk.ARP_OP: (6, 2),
    fk.ARP_SHA: (8, 6),
    fk.ARP_SPA: (14, 4),
    fk.ARP_THA: (18, 6),
    fk.ARP_TPA: (24, 4),
}


def apply(
    frame: bytes | bytearray,
    key: Sequence[int],
    ops: Sequence[Op],
    meter: Callable[[int, int], bool] | None = None,
    conntrack: ConntrackHook | None = None,
) -> list[tuple[Op, bytes]]:
    out: list[tuple[Op, bytes]] = []
    _run(bytearray(frame), key, ops, 0, out, meter, None, conntrack)
    return out


def _run(
    buf: bytearray,
    key: Sequence[int],
    ops: Sequence[Op],
    shift: int,
    out: list[tuple[Op, bytes]],
    meter: Callable[[int, int], bool] | None,
    tun: list[int] | None,
    conntrack: ConntrackHook | None = None,
) -> int:
    """Apply ops to buf; returns the final shift, -1 if a meter or conntrack dropped it.

    Tunnel metadata written on the way (`tun`, the key's 9 tunnel slots) rides
    on each output after it: ("output", port, (tun_id, tun_src, ...))."""
    for op in ops:
        kind = op[0]
        if kind == "set":
            slot = op[1]
            if slot in fk.TUNNEL_FIELDS:
                if tun is None:
                    tun = list(key[fk.TUN_SLOTS])
                tun[slot - fk.TUN_ID] = op[2]
            else:
                _set(buf, key, shift, slot, op[2])
        elif kind == "ct" and conntrack is not None:
            r = conntrack(op, buf, key)
            if r is False:
                return -1
            if r is not True:
                out.append(r)
        elif kind in _TERMINAL:
            if tun is not None and kind == "output":
                op = ("output", op[1], tuple(tun))
            out.append((op, bytes(buf)))
        elif kind == "push_vlan":
            buf[12:12] = struct.pack("!HH", op[1], op[2])
            shift += 4
        elif kind == "pop_vlan":
            if len(buf) >= 18:
                del buf[12:16]
                shift -= 4
        elif kind == "clone":
            # a meter that drops inside a clone drops that copy only
            copy = None if tun is None else list(tun)
            _run(bytearray(buf), key, op[1], shift, out, meter, copy, conntrack)
        elif kind == "meter" and meter is not None and not meter(op[1], len(buf)):
            return -1
    return shift


def _patch(buf: bytearray, pos: int, new: bytes, csums: list[tuple[int, bool]]) -> None:
    """Write `new` at `pos`, updating each checksum at (offset, is_udp) incrementally."""
    end = pos + len(new)
    a = pos & ~1
    b = end + (end & 1)
    if b > len(buf):
        return
    old = bytes(buf[a:b])
    buf[pos:end] = new
    cur = bytes(buf[a:b])
    for at, udp in csums:
        if at + 2 > len(buf):
            continue
        c = int.from_bytes(buf[at : at + 2], "big")
        if udp and c == 0:
            continue  # no UDP checksum over IPv4
        c = update_bytes(c, old, cur)
        if udp and c == 0:
            c = 0xFFFF
        buf[at : at + 2] = c.to_bytes(2, "big")


def _l4_csum(key: Sequence[int], l4: int) -> list[tuple[int, bool]]:
    proto = key[fk.IP_PROTO]
    if key[fk.IP_FRAG] & fk.FRAG_LATER or not l4:
        return []
    if proto == 6:
        return [(l4 + 16, False)]
    if proto == 17:
        return [(l4 + 6, key[fk.ETH_TYPE] == 0x0800)]
    if proto == 58:
        return [(l4 + 2, False)]
    return []


_L4_SLOTS = frozenset((fk.TP_SRC, fk.TP_DST, fk.ICMP_TYPE, fk.ICMP_CODE))


def _ip_end(buf: bytearray, key: Sequence[int], l3: int) -> int:
    """Where the IP packet at `l3` ends, by its header's length field."""
    if key[fk.ETH_TYPE] == 0x0800:
        return l3 + int.from_bytes(buf[l3 + 2 : l3 + 4], "big")
    return l3 + 40 + int.from_bytes(buf[l3 + 4 : l3 + 6], "big")


def _set_sctp_port(
    buf: bytearray, key: Sequence[int], l3: int, l4: int, pos: int, value: int
) -> None:
    end = _ip_end(buf, key, l3)
    new = value.to_bytes(2, "big")
    if key[fk.IP_FRAG] or end > len(buf) or end - l4 < 12:
        buf[pos : pos + 2] = new
        return
    stored = int.from_bytes(buf[l4 + 8 : l4 + 12], "little")
    buf[l4 + 8 : l4 + 12] = bytes(4)
    before = crc32c(bytes(buf[l4:end]))
    buf[pos : pos + 2] = new
    after = crc32c(bytes(buf[l4:end]))
    buf[l4 + 8 : l4 + 12] = (stored ^ before ^ after).to_bytes(4, "little")


def _set_l4(buf: bytearray, key: Sequence[int], l3: int, l4: int, slot: int, value: int) -> None:
    """Ports and ICMP type/code: the same rewrite over IPv4 and IPv6."""
    if key[fk.IP_FRAG] & fk.FRAG_LATER:
        return  # a later fragment has no transport header: its first bytes are payload
    if slot in (fk.TP_SRC, fk.TP_DST):
        pos = l4 + (0 if slot == fk.TP_SRC else 2)
        if key[fk.IP_PROTO] == 132:
            _set_sctp_port(buf, key, l3, l4, pos, value)
            return
        _patch(buf, pos, value.to_bytes(2, "big"), _l4_csum(key, l4))
    else:
        t = value if slot == fk.ICMP_TYPE else buf[l4]
        c = value if slot == fk.ICMP_CODE else buf[l4 + 1]
        _patch(buf, l4, bytes((t, c)), [(l4 + 2, False)])


def _set(buf: bytearray, key: Sequence[int], shift: int, slot: int, value: int) -> None:
    if slot in _L2:
        o, w = _L2[slot]
        buf[o : o + w] = value.to_bytes(w, "big")
        return
    if slot in (fk.VLAN_VID, fk.VLAN_PCP):
        if len(buf) < 18 or int.from_bytes(buf[12:14], "big") not in (0x8100, 0x88A8, 0x9100):
            return
        tci = int.from_bytes(buf[14:16], "big")
        if slot == fk.VLAN_VID:
            tci = (tci & 0xF000) | (value & 0xFFF)
        else:
            tci = (tci & 0x1FFF) | ((value & 7) << 13)
        buf[14:16] = tci.to_bytes(2, "big")
        return
    l3 = key[fk.L3_OFS] + shift
    l4 = key[fk.L4_OFS] + shift if key[fk.L4_OFS] else 0
    et = key[fk.ETH_TYPE]
    if et == 0x0800:
        ip_csum = [(l3 + 10, False)]
        if slot in _V4:
            o, w = _V4[slot]
            extra = _l4_csum(key, l4) if slot != fk.IP_TTL else []
            if slot == fk.IP_TTL:
                # TTL shares its checksum word with the protocol byte
                _patch(buf, l3 + 8, bytes((value, buf[l3 + 9])), ip_csum)
            else:
                _patch(buf, l3 + o, value.to_bytes(w, "big"), ip_csum + extra)
        elif slot in (fk.IP_DSCP, fk.IP_ECN):
            tos = buf[l3 + 1]
            tos = ((value << 2) | (tos & 3)) if slot == fk.IP_DSCP else ((tos & 0xFC) | value)
            _patch(buf, l3, bytes((buf[l3], tos)), ip_csum)
        elif slot in _L4_SLOTS and l4:
            _set_l4(buf, key, l3, l4, slot, value)
    elif et == 0x86DD:
        if slot in _V6:
            o, w = _V6[slot]
            extra = _l4_csum(key, l4) if slot != fk.IP_TTL else []
            _patch(buf, l3 + o, value.to_bytes(w, "big"), extra)
        elif slot in (fk.IP_DSCP, fk.IP_ECN, fk.IPV6_LABEL):
            word = int.from_bytes(buf[l3 : l3 + 4], "big")
            if slot == fk.IP_DSCP:
                word = (word & ~(0x3F << 22)) | (value << 22)
            elif slot == fk.IP_ECN:
                word = (word & ~(0x3 << 20)) | (value << 20)
            else:
                word = (word & ~0xFFFFF) | value
            buf[l3 : l3 + 4] = word.to_bytes(4, "big")
        elif slot in _L4_SLOTS and l4:
            _set_l4(buf, key, l3, l4, slot, value)
        elif slot == fk.ND_TARGET and l4:
            _patch(buf, l4 + 8, value.to_bytes(16, "big"), [(l4 + 2, False)])
        elif slot in (fk.ND_SLL, fk.ND_TLL) and l4:
            want = 1 if slot == fk.ND_SLL else 2
            o = l4 + 24
            while o + 8 <= len(buf) and buf[o + 1]:
                if buf[o] == want:
                    _patch(buf, o + 2, value.to_bytes(6, "big"), [(l4 + 2, False)])
                    break
                o += buf[o + 1] * 8
        elif slot == fk.ND_RESERVED and l4:
            _patch(buf, l4 + 4, value.to_bytes(4, "big"), [(l4 + 2, False)])
        elif slot == fk.ND_OPTIONS_TYPE and l4 and l4 + 32 <= len(buf) and buf[l4 + 25]:
            # the first option's type, as Open vSwitch writes it (nothing if no option)
            _patch(buf, l4 + 24, bytes((value, buf[l4 + 25])), [(l4 + 2, False)])
    elif et == 0x0806 and slot in _ARP:
        o, w = _ARP[slot]
        buf[l3 + o : l3 + o + w] = value.to_bytes(w, "big")


def format_ops(ops: Sequence[Op]) -> list[str]:
    out = []
    for op in ops:
        kind = op[0]
        if kind == "output":
            f = BY_INDEX[fk.IN_PORT]
            out.append(f.format(op[1]))
        elif kind == "set":
            f = BY_INDEX[op[1]]
            out.append(f"set({f.ovs}={f.format_value(op[2])})")
        elif kind == "push_vlan":
            out.append(f"push_vlan(tpid={op[1]:#06x},vid={op[2] & 0xFFF},pcp={op[2] >> 13})")
        elif kind == "pop_vlan":
            out.append("pop_vlan")
        elif kind == "controller":
            out.append(
                f"controller(reason={op[1]},max_len={op[2]},table={op[3]},cookie={op[4]:#x})"
            )
        elif kind == "normal":
            out.append("normal")
        elif kind == "meter":
            out.append(f"meter({op[1]})")
        elif kind == "clone":
            out.append("clone(" + ",".join(format_ops(op[1])) + ")")
        elif kind == "ct":
            out.append(op[1].format())
        elif kind == "learn":
            out.append(
                f"learn(vlan={op[1]},mac={BY_INDEX[fk.ETH_SRC].format_value(op[2])},port={op[3]})"
            )
        else:
            out.append(repr(op))
    return out


def format_odp(ops: Sequence[Op]) -> str:
    return ",".join(format_ops(ops)) if ops else "drop"

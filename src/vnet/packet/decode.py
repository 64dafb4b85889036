"""Full decode of a frame into a list of layers, for people and JSON.

This is the slow, thorough companion of `flowkey.extract`: it keeps every
header field, validates checksums, and follows tunnels (VXLAN on UDP 4789,
Geneve on 6081, GRE/NVGRE with protocol 0x6558) into the inner frame.  It shares
the per-protocol parsers with the rest of vnet, so the two views cannot drift.

A decode never raises: when a layer fails, `Decoded.error` names the reason and
the byte offset, and the layers before it are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import arp, ethernet, geneve, gre, icmp, icmpv6, ipv4, ipv6, tcp, udp, vxlan
from .addr import ip4_str, ip6_str, mac_str
from .checksum import internet_checksum, pseudo_header_v4, pseudo_header_v6
from .errors import DecodeError

__all__ = ["Decoded", "decode"]

MAX_TUNNEL_DEPTH = 4
_TCP_FLAG_ORDER = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr", "ns")


@dataclass
class Decoded:
    layers: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    error_offset: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layers": self.layers}
        if self.error is not None:
            out["error"] = {"reason": self.error, "offset": self.error_offset}
        return out

    def layer(self, name: str, nth: int = 0) -> dict[str, Any]:
        """The nth layer called `name` (KeyError when absent): handy in tests."""
        found = [entry for entry in self.layers if entry["layer"] == name]
        if len(found) <= nth:
            raise KeyError(name)
        return found[nth]


def decode(frame: bytes | bytearray | memoryview) -> Decoded:
    out = Decoded()
    buf = bytes(frame)
    try:
        _ethernet(buf, 0, out, 0)
    except DecodeError as e:
        out.error = e.reason.label
        out.error_offset = e.offset
    return out


def _ethernet(buf: bytes, off: int, out: Decoded, depth: int) -> None:
    eth, o = ethernet.parse(buf, off)
    out.layers.append(
        {
            "layer": "ethernet",
            "offset": off,
            "dst": mac_str(eth.dst),
            "src": mac_str(eth.src),
            "type": f"0x{eth.ethertype:04x}",
        }
    )
    et = eth.ethertype
    while et in ethernet.VLAN_TPIDS:
        tag, et, o2 = ethernet.parse_tag(buf, o, et)
        name = "802.1q" if tag.tpid == ethernet.ETH_TYPE_8021Q else "802.1ad"
        out.layers.append(
            {
                "layer": name,
                "offset": o - 2,
                "tpid": f"0x{tag.tpid:04x}",
                "pcp": tag.pcp,
                "dei": tag.dei,
                "vid": tag.vid,
                "type": f"0x{et:04x}",
            }
        )
        o = o2
    if et == ethernet.ETH_TYPE_IPV4:
        _ipv4(buf, o, out, depth)
    elif et == ethernet.ETH_TYPE_IPV6:
        _ipv6(buf, o, out, depth)
    elif et == ethernet.ETH_TYPE_ARP:
        a, _ = arp.parse(buf, o)
        out.layers.append(
            {
                "layer": "arp",
                "offset": o,
                "op": a.op,
                "sha": mac_str(a.sha),
                "spa": ip4_str(a.spa),
                "tha": mac_str(a.tha),
                "tpa": ip4_str(a.tpa),
            }
        )
    elif len(buf) > o:
        out.layers.append({"layer": "payload", "offset": o, "length": len(buf) - o})


def _ipv4(buf: bytes, off: int, out: Decoded, depth: int) -> None:
    h, o = ipv4.parse(buf, off)
    out.layers.append(
        {
            "layer": "ipv4",
            "offset": off,
            "src": ip4_str(h.src),
            "dst": ip4_str(h.dst),
            "proto": h.proto,
            "ttl": h.ttl,
            "dscp": h.dscp,
            "ecn": h.ecn,
            "ihl": h.ihl,
            "total_length": h.total_length,
            "id": h.ident,
            "df": h.df,
            "mf": h.mf,
            "frag_offset": h.frag_offset,
            "options": h.options.hex(),
            "checksum": f"0x{h.checksum:04x}",
            "checksum_ok": ipv4.header_checksum_ok(buf, off),
        }
    )
    if h.frag_offset:
        out.layers.append({"layer": "fragment", "offset": o, "length": off + h.total_length - o})
        return
    end = off + h.total_length
    _l4(buf, o, end, h.proto, out, depth, pseudo_header_v4(h.src, h.dst, h.proto, end - o), h)


def _ipv6(buf: bytes, off: int, out: Decoded, depth: int) -> None:
    h, o = ipv6.parse(buf, off)
    end = o + h.payload_length
    layer: dict[str, Any] = {
        "layer": "ipv6",
        "offset": off,
        "src": ip6_str(h.src),
        "dst": ip6_str(h.dst),
        "next_header": h.next_header,
        "hop_limit": h.hop_limit,
        "traffic_class": h.traffic_class,
        "flow_label": h.flow_label,
        "payload_length": h.payload_length,
    }
    out.layers.append(layer)
    proto, o, seen, frag = ipv6.walk_extensions(buf, o, h.next_header, end)
    layer["extensions"] = [{"type": x.kind, "offset": x.offset, "length": x.length} for x in seen]
    if frag is not None:
        layer["fragment"] = {"offset": frag.offset, "more": frag.more, "id": frag.ident}
        if frag.offset:
            return
    ph = pseudo_header_v6(h.src, h.dst, proto, end - o)
    _l4(buf, o, end, proto, out, depth, ph, None)


def _csum_ok(ph: bytes, seg: bytes) -> bool:
    return internet_checksum(ph, seg) == 0


def _l4(
    buf: bytes,
    off: int,
    end: int,
    proto: int,
    out: Decoded,
    depth: int,
    ph: bytes,
    v4: ipv4.IPv4 | None,
) -> None:
    seg = buf[off:end]
    if proto == ipv4.IPPROTO_TCP:
        t, _ = tcp.parse(buf[:end], off)
        flags = [n for n in _TCP_FLAG_ORDER if t.flags & tcp.FLAG_NAMES[n]]
        out.layers.append(
            {
                "layer": "tcp",
                "offset": off,
                "src_port": t.src,
                "dst_port": t.dst,
                "seq": t.seq,
                "ack": t.ack,
                "flags": flags,
                "window": t.window,
                "data_offset": t.data_offset,
                "checksum": f"0x{t.checksum:04x}",
                "checksum_ok": _csum_ok(ph, seg),
                "payload_length": end - off - t.data_offset * 4,
            }
        )
    elif proto == ipv4.IPPROTO_UDP:
        u, o = udp.parse(buf[:end], off)
        ok = True if (u.checksum == 0 and v4 is not None) else _csum_ok(ph, seg)
        out.layers.append(
            {
                "layer": "udp",
                "offset": off,
                "src_port": u.src,
                "dst_port": u.dst,
                "length": u.length,
                "checksum": f"0x{u.checksum:04x}",
                "checksum_ok": ok,
            }
        )
        if depth < MAX_TUNNEL_DEPTH and u.dst == vxlan.VXLAN_PORT:
            vx, o2 = vxlan.parse(buf[: off + u.length], o)
            out.layers.append(
                {"layer": "vxlan", "offset": o, "flags": f"0x{vx.flags:02x}", "vni": vx.vni}
            )
            _ethernet(buf[: off + u.length], o2, out, depth + 1)
        elif depth < MAX_TUNNEL_DEPTH and u.dst == geneve.GENEVE_PORT:
            gv, o2 = geneve.parse(buf[: off + u.length], o)
            out.layers.append(
                {
                    "layer": "geneve",
                    "offset": o,
                    "version": gv.version,
                    "oam": gv.oam,
                    "critical": gv.critical,
                    "protocol": f"0x{gv.protocol:04x}",
                    "vni": gv.vni,
                    "options": [
                        {"class": f"0x{x.cls:04x}", "type": f"0x{x.type:02x}", "data": x.data.hex()}
                        for x in gv.options
                    ],
                }
            )
            if gv.protocol == ethernet.ETH_TYPE_TEB:
                _ethernet(buf[: off + u.length], o2, out, depth + 1)
    elif proto == ipv4.IPPROTO_ICMP:
        m, _ = icmp.parse(buf[:end], off)
        layer: dict[str, Any] = {
            "layer": "icmp",
            "offset": off,
            "type": m.type,
            "code": m.code,
            "checksum": f"0x{m.checksum:04x}",
            "checksum_ok": internet_checksum(seg) == 0,
        }
        if m.type in (icmp.TYPE_ECHO_REQUEST, icmp.TYPE_ECHO_REPLY):
            layer["id"], layer["seq"] = m.echo_id, m.echo_seq
        if m.type == icmp.TYPE_DEST_UNREACH and m.code == icmp.CODE_FRAG_NEEDED:
            layer["mtu"] = int.from_bytes(m.rest[2:], "big")
        out.layers.append(layer)
    elif proto == ipv4.IPPROTO_ICMPV6:
        m6, o = icmpv6.parse(buf[:end], off)
        layer = {
            "layer": "icmpv6",
            "offset": off,
            "type": m6.type,
            "code": m6.code,
            "checksum": f"0x{m6.checksum:04x}",
            "checksum_ok": _csum_ok(ph, seg),
        }
        if m6.type in (icmpv6.ND_RS, icmpv6.ND_RA, icmpv6.ND_NS, icmpv6.ND_NA):
            nd = icmpv6.parse_nd(buf, o, m6.type, end)
            layer["nd"] = {
                "target": ip6_str(nd.target) if nd.target else None,
                "sll": mac_str(nd.sll) if nd.sll else None,
                "tll": mac_str(nd.tll) if nd.tll else None,
                "flags": nd.flags,
            }
        if m6.type == icmpv6.TYPE_PACKET_TOO_BIG and end - o >= 4:
            layer["mtu"] = int.from_bytes(buf[o : o + 4], "big")
        out.layers.append(layer)
    elif proto == ipv4.IPPROTO_GRE:
        g, o = gre.parse(buf[:end], off)
        layer = {
            "layer": "gre",
            "offset": off,
            "protocol": f"0x{g.protocol:04x}",
            "key": g.key if g.key_present else None,
            "seq": g.seq if g.seq_present else None,
        }
        if g.checksum_present:
            layer["checksum_ok"] = internet_checksum(seg) == 0
        if g.key_present and g.protocol == gre.GRE_PROTO_TEB:
            layer["nvgre"] = {"vsid": g.vsid, "flow_id": g.flow_id}
        out.layers.append(layer)
        if depth < MAX_TUNNEL_DEPTH and g.protocol == gre.GRE_PROTO_TEB:
            _ethernet(buf[:end], o, out, depth + 1)
    elif end > off:
        out.layers.append({"layer": "payload", "offset": off, "proto": proto, "length": end - off})

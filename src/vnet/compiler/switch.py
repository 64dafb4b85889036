"""The logical switch's flows: one builder per stage of `stages.SWITCH`.

L2 without flood-and-learn: the model knows every port's MAC, so unicast is
forwarded proactively; ARP and IPv6 neighbour solicitations for a known
address are answered by the switch (the NS is turned into an NA in place,
with Open vSwitch's ND extension fields); a solicitation the switch leaves
alone (duplicate address detection, none of the sender's link-layer address)
goes only to the owner of its target; only broadcast, multicast and unknown
unicast reach more than one port, and only ports of the same network.  A
frame never leaves its network: the emitter scopes every flow to it.

An external network (`external`, on a `physnet`) has one more logical port,
its *localnet* port (`LOCALNET_KEY`), the physical network: broadcast,
multicast and unknown unicast go to it as well (the outside's MACs are not in
the model), it has no port security (it carries many MACs) and no firewall
rules (it is no workload: its memberships are none), and egress never sends a
frame back out of it when it came in by it.  Which uplink it is on each
chassis, and the VLAN tag, is `localize`'s.

Builders match neither the datapath's key nor name tables: they say `NEXT`,
`OUTPUT` or a stage, and the emitter resolves them from the declaration.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any

from ..model.objects import Network, Port
from ..packet.icmpv6 import NA_FLAG_OVERRIDE, NA_FLAG_SOLICITED, OPT_TLL
from ..pipeline.actions import OFPP_IN_PORT, Action, Output, RegMove, SetField
from .logical import _SLOT, To, _At, _load, network_stage, port_stage
from .stages import LOCALNET_KEY, NEXT, OUTPUT, REG_INPORT, REG_OUTPORT

__all__ = ["deliver", "eui64_link_local"]

MCAST = (1 << 40, 1 << 40)  # the group bit of eth_dst, as value/mask
ETH_IP, ETH_ARP, ETH_IP6 = 0x0800, 0x0806, 0x86DD
_ANY6 = (0, (1 << 128) - 1)


def eui64_link_local(mac: str) -> str:
    b = bytearray(int(x, 16) for x in mac.split(":"))
    b[0] ^= 0x02
    iid = bytes(b[:3]) + b"\xff\xfe" + bytes(b[3:])
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + iid))


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def _ip(text: str) -> tuple[int, int]:
    """Address or CIDR -> (value, mask)."""
    net = ipaddress.ip_network(text, strict=False)
    return int(net.network_address), int(net.netmask)


def _up(net: Network, port: Port) -> bool:
    return port.admin_up and net.admin_up


def deliver(keys: Iterable[int]) -> list[Action | To]:
    """Each logical port in turn through the rest of ingress (the firewall), egress and out."""
    acts: list[Action | To] = []
    for k in keys:
        acts += [_load(REG_OUTPORT, k), To(NEXT)]
    return acts


@port_stage("ls_in_port_sec")
def in_port_sec(e: _At, net: Network, port: Port) -> None:
    me = {REG_INPORT: port.tunnel_key or 0}
    if not _up(net, port):
        e(100, "admin down: drop", me)
        return
    if not port.port_security:
        e(50, "port security off", me, goto=NEXT)
        return
    for smac, v4, v6 in _sources(port):
        src = {**me, "eth_src": _mac(smac)}
        for a in v4:
            e(90, "ipv4 source", {**src, "eth_type": ETH_IP, "ipv4_src": _ip(a)}, goto=NEXT)
            e(90, "arp source", {**src, "eth_type": ETH_ARP, "arp_spa": _ip(a), "arp_sha": _mac(smac)}, goto=NEXT)  # fmt: skip
        for a in [*v6, eui64_link_local(smac)]:
            e(90, "ipv6 source", {**src, "eth_type": ETH_IP6, "ipv6_src": _ip(a)}, goto=NEXT)
        for icmp in (135, 143):  # duplicate address detection, MLD reports: from ::
            e(90, "ipv6 unspecified source", {**src, "eth_type": ETH_IP6, "ipv6_src": _ANY6, "ip_proto": 58, "icmpv6_type": icmp}, goto=NEXT)  # fmt: skip
        for et, what in ((ETH_IP, "ipv4"), (ETH_ARP, "arp"), (ETH_IP6, "ipv6")):
            e(80, f"{what} from another address: drop", {**src, "eth_type": et})
        e(50, "other protocols from the port's MAC", src, goto=NEXT)


def _ns(a: str) -> dict[str, Any]:
    return {"eth_type": ETH_IP6, "ip_proto": 58, "icmpv6_type": 135, "nd_target": _ip(a)}


@port_stage("ls_in_arp_rsp")
def arp_rsp(e: _At, net: Network, port: Port) -> None:
    if not _up(net, port):
        return
    key, mac = port.tunnel_key or 0, port.mac or "00:00:00:00:00:00"
    for a in port.ips:
        if ipaddress.ip_address(a).version != 4:
            continue
        req = {"eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": _ip(a)}
        e(60, "own address: pass", {**req, REG_INPORT: key}, goto=NEXT)
        e(50, "arp reply from the model", req, apply=_arp_reply(mac, a))
    # a solicitation for a known address is answered by the switch; the owner's own,
    # duplicate address detection (from ::) and one without a source link-layer
    # address (a unicast reachability probe) go on to the owner
    for a in port.ips:
        if ipaddress.ip_address(a).version != 6:
            continue
        ns = _ns(a)
        e(60, "own address: pass", {**ns, REG_INPORT: key}, goto=NEXT)
        e(55, "duplicate address detection: pass", {**ns, "ipv6_src": _ANY6}, goto=NEXT)
        e(55, "no source link-layer address: pass", {**ns, "nd_sll": 0}, goto=NEXT)
        e(50, "neighbour advertisement from the model", ns, apply=_na_reply(mac, a), goto="ls_in_nd_na")  # fmt: skip


@port_stage("ls_in_nd_na")
def nd_na(e: _At, net: Network, port: Port) -> None:
    if not _up(net, port):
        return
    mac = port.mac or "00:00:00:00:00:00"
    for a in port.ips:
        if ipaddress.ip_address(a).version == 6:
            na = {**_ns(a), "icmpv6_type": 136}
            e(50, "the owner's link-layer address", na, apply=[SetField(_SLOT["nd_tll"], _mac(mac)), Output(OFPP_IN_PORT)])  # fmt: skip


@port_stage("ls_in_l2_lkup")
def l2_lkup(e: _At, net: Network, port: Port) -> None:
    if not _up(net, port):
        return
    mac = port.mac or "00:00:00:00:00:00"
    to_me = [_load(REG_OUTPORT, port.tunnel_key or 0)]
    e(50, "unicast to the port", {"eth_dst": _mac(mac)}, apply=to_me, goto=NEXT)
    for pair in port.allowed_address_pairs:
        if pair.mac and pair.mac != mac:
            e(50, "unicast to an address pair's MAC", {"eth_dst": _mac(pair.mac)}, apply=to_me, goto=NEXT)  # fmt: skip


@port_stage("ls_out_port_sec")
def out_port_sec(e: _At, net: Network, port: Port) -> None:
    key = port.tunnel_key or 0
    out = {REG_OUTPORT: key}
    if not _up(net, port):
        e(100, "admin down: drop", out)
        return
    mac = port.mac or "00:00:00:00:00:00"
    e(100, "never back to the sender", {**out, REG_INPORT: key})
    if not port.port_security:
        e(50, "port security off", out, goto=OUTPUT)
        return
    for smac in sorted({mac, *(p.mac for p in port.allowed_address_pairs if p.mac)}):
        e(50, "frames for the port's MAC", {**out, "eth_dst": _mac(smac)}, goto=OUTPUT)
    e(50, "broadcast and multicast", {**out, "eth_dst": MCAST}, goto=OUTPUT)


@network_stage("ls_in_l2_lkup")
def l2_flood(e: _At, net: Network, ports: Sequence[Port]) -> None:
    """Broadcast, multicast, unknown unicast and neighbour solicitations of one network."""
    if not net.admin_up:
        return
    live = sorted((p for p in ports if p.admin_up), key=lambda p: p.tunnel_key or 0)
    outside = [LOCALNET_KEY] if net.external else []

    def flood(rule: str, prio: int, match: dict[str, Any], keys: Iterable[int]) -> None:
        ks = tuple(keys)
        e(prio, rule, match, apply=deliver(ks), flood=ks)

    if live or outside:
        flood("broadcast and multicast to the network's ports", 70, {"eth_dst": MCAST}, [*(p.tunnel_key or 0 for p in live), *outside])  # fmt: skip
    # a neighbour solicitation goes to the owner of its target only
    owners: dict[int, list[int]] = {}
    for p in live:
        for a in p.ips:
            ip = ipaddress.ip_address(a)
            if ip.version == 6:
                sn = int(ipaddress.IPv6Address("ff02::1:ff00:0")) | (int(ip) & 0xFFFFFF)
                owners.setdefault(sn, []).append(p.tunnel_key or 0)
    for sn, keys in sorted(owners.items()):
        flood("neighbour solicitation to the target's owner", 75, {"eth_dst": MCAST, "eth_type": ETH_IP6, "ipv6_dst": (sn, (1 << 128) - 1), "ip_proto": 58, "icmpv6_type": 135}, sorted(keys))  # fmt: skip
    open_ports = [p.tunnel_key or 0 for p in live if not p.port_security] + outside
    if open_ports:
        flood("unknown unicast to ports without port security", 10, {}, open_ports)


@network_stage("ls_out_port_sec")
def localnet_out(e: _At, net: Network, ports: Sequence[Port]) -> None:
    """The localnet port of an external network: no port security, never back out."""
    if not net.external:
        return
    out = {REG_OUTPORT: LOCALNET_KEY}
    e(100, "localnet: never back to the physical network", {**out, REG_INPORT: LOCALNET_KEY})
    if net.admin_up:
        e(50, "localnet: no port security", out, goto=OUTPUT)


def _sources(port: Port) -> list[tuple[str, list[str], list[str]]]:
    """(MAC, IPv4 sources, IPv6 sources) a port may send from."""
    mac = port.mac or "00:00:00:00:00:00"
    by_mac: dict[str, tuple[list[str], list[str]]] = {mac: ([], [])}
    for a in port.ips:
        by_mac[mac][ipaddress.ip_address(a).version == 6].append(a)
    for pair in port.allowed_address_pairs:
        v4, v6 = by_mac.setdefault(pair.mac or mac, ([], []))
        (v6 if ipaddress.ip_network(pair.ip).version == 6 else v4).append(pair.ip)
    return [(m, v4, v6) for m, (v4, v6) in sorted(by_mac.items())]


def _arp_reply(mac: str, ip: str) -> list[Action]:
    s = _SLOT
    return [
        RegMove(s["eth_src"], 0, s["eth_dst"], 0, 48),
        SetField(s["eth_src"], _mac(mac)),
        SetField(s["arp_op"], 2),
        RegMove(s["arp_sha"], 0, s["arp_tha"], 0, 48),
        SetField(s["arp_sha"], _mac(mac)),
        RegMove(s["arp_spa"], 0, s["arp_tpa"], 0, 32),
        SetField(s["arp_spa"], int(ipaddress.IPv4Address(ip))),
        Output(OFPP_IN_PORT),
    ]


def _na_reply(mac: str, ip: str) -> list[Action]:
    """The solicitation turned around in place into a solicited, overriding advertisement.

    The source link-layer option becomes the target link-layer option (its type
    byte rewritten), so the frame keeps its length; checksums follow each write.
    The option's address is written by `ls_in_nd_na`, where the packet already is
    an advertisement: OpenFlow lets only a flow that matches an NA write `nd_tll`,
    and Open vSwitch commits the option type before the address.
    """
    s = _SLOT
    return [
        RegMove(s["eth_src"], 0, s["eth_dst"], 0, 48),
        SetField(s["eth_src"], _mac(mac)),
        RegMove(s["ipv6_src"], 0, s["ipv6_dst"], 0, 128),
        SetField(s["ipv6_src"], int(ipaddress.IPv6Address(ip))),
        SetField(s["icmpv6_type"], 136),
        SetField(s["nd_reserved"], NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE),
        SetField(s["nd_options_type"], OPT_TLL),
    ]

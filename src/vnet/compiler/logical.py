"""Model -> logical flows: chassis-independent, each with its provenance.

A logical flow is a pipeline `Flow` in a logical stage (`stages.PIPELINE`)
that speaks of networks and logical ports -- `metadata` holds the network's
VNI, `reg6`/`reg7` the logical input/output port key -- never of OpenFlow
port numbers; `localize` adds those per chassis.  Every flow says where it
came from: `origin` names the model object, the stage and the rule, and the
cookie is derived from the same (high 32 bits: the object's id, low 32: the
rule), so a flow dump or a trace answers "which object put this here".

L2 without flood-and-learn: the model knows every port's MAC, so unicast is
forwarded proactively; ARP and IPv6 neighbour solicitations for a known
address are answered by the switch (the NS is turned into an NA in place,
with Open vSwitch's ND extension fields); a solicitation the switch leaves
alone (duplicate address detection, none of the sender's link-layer address)
goes only to the owner of its target; only
broadcast, multicast and unknown unicast reach more than one port, and only
ports of the same network.  A frame never leaves its network: every flow
after `phy_in` matches the network's VNI.

Compiling is a pure function of the model, and incremental by construction:
each port's flows and each network's flood flows are memoised on exactly the
fields they read, so a change to one port recompiles that port and its
network's flood flows, nothing else.  Output is sorted: the same model gives
byte-identical flows.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model.objects import Network, Port
from ..model.rules import State
from ..packet.icmpv6 import NA_FLAG_OVERRIDE, NA_FLAG_SOLICITED, OPT_TLL
from ..pipeline.actions import OFPP_IN_PORT, Action, Output, RegMove, Resubmit, SetField
from ..pipeline.fields import lookup
from ..pipeline.flow import Flow, Instructions
from ..pipeline.match import Match
from . import stages
from .stages import FLAG_FROM_TUNNEL, REG_FLAGS, REG_INPORT, REG_OUTPORT, check, table

__all__ = ["Compiler", "LFlow", "cookie_for", "eui64_link_local"]

MCAST = (1 << 40, 1 << 40)  # the group bit of eth_dst, as value/mask
ETH_IP, ETH_ARP, ETH_IP6 = 0x0800, 0x0806, 0x86DD


@dataclass(frozen=True)
class LFlow:
    flow: Flow
    network: str | None  # the network's id; None: every chassis gets it
    owner: tuple[str, str]  # (kind, id) of the model object
    rule: str
    # a flood: the logical ports it delivers to (localize splits them into this chassis'
    # own and one tunnelled copy per other chassis)
    flood: tuple[int, ...] = ()
    # the output order (table, priority down, match, instructions), computed once: an
    # LFlow lives in the compiler's memo across compiles, so sorting costs no repr()
    order: tuple[int, int, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        f = self.flow
        key = (f.table, -f.priority, repr(f.match), repr(f.instructions))
        object.__setattr__(self, "order", key)


def cookie_for(owner_id: str, rule: str) -> int:
    return (zlib.crc32(owner_id.encode()) << 32) | zlib.crc32(rule.encode())


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


_SLOT = {n: lookup(n).index for n in ("eth_src", "eth_dst", "arp_op", "arp_sha", "arp_tha",
                                        "arp_spa", "arp_tpa", "ipv6_src", "ipv6_dst", "nd_tll",
                                        "icmpv6_type", "nd_reserved", "nd_options_type",
                                        "tun_id", "tun_dst", "tun_metadata0",
                                        REG_INPORT, REG_OUTPORT, REG_FLAGS)}  # fmt: skip


def _load(reg: str, value: int) -> SetField:
    return SetField(_SLOT[reg], value)


class _Emit:
    """Collects the flows of one model object, stamped with their provenance."""

    def __init__(self, kind: str, obj: Any, network: str | None) -> None:
        self.kind, self.obj, self.network = kind, obj, network
        self.out: list[LFlow] = []

    def __call__(
        self,
        stage: str,
        priority: int,
        rule: str,
        match: dict[str, Any],
        apply: Sequence[Action] = (),
        goto: str | None = None,
        metadata: int | None = None,
        flood: tuple[int, ...] = (),
    ) -> None:
        ins = Instructions(
            apply=tuple(apply),
            goto=None if goto is None else table(goto),
            metadata=None if metadata is None else (metadata, (1 << 64) - 1),
        )
        origin = f"{self.kind} {self.obj.name} ({self.obj.id}) · {stage} · {rule}"
        f = Flow(
            match=Match.of(**match),
            instructions=ins,
            table=table(stage),
            priority=priority,
            cookie=cookie_for(self.obj.id, rule),
            origin=origin,
        )
        check(f)
        self.out.append(LFlow(f, self.network, (self.kind, self.obj.id), rule, flood))


@dataclass(frozen=True)
class _Pipeline:
    name: str = "pipeline"
    id: str = "pipeline"


def default_flows() -> list[LFlow]:
    """Each stage's lowest-priority flow: what happens to what nothing else claimed."""
    e = _Emit("stage", _Pipeline(), None)
    for st in stages.PIPELINE:
        if st.name == "ls_in_arp_rsp":
            e(st.name, 0, "default: continue", {}, goto="ls_in_l2_lkup")
        else:
            e(st.name, 0, "default: drop", {})
    flag = (FLAG_FROM_TUNNEL, FLAG_FROM_TUNNEL)
    e("phy_out", 50, "out of a tunnel: never back into one", {REG_FLAGS: flag})
    return e.out


def port_flows(net: Network, port: Port) -> list[LFlow]:
    e = _Emit("port", port, net.id)
    vni, key = net.segment_id or 0, port.tunnel_key or 0
    me = {"metadata": vni, REG_INPORT: key}
    up = port.admin_up and net.admin_up
    mac = port.mac or "00:00:00:00:00:00"
    # -- ingress port security
    if not up:
        e("ls_in_port_sec", 100, "admin down: drop", me)
    elif not port.port_security:
        e("ls_in_port_sec", 50, "port security off", me, goto="ls_in_arp_rsp")
    else:
        for smac, v4, v6 in _sources(port):
            src = {**me, "eth_src": _mac(smac)}
            nxt = "ls_in_arp_rsp"
            for a in v4:
                e(
                    "ls_in_port_sec",
                    90,
                    "ipv4 source",
                    {**src, "eth_type": ETH_IP, "ipv4_src": _ip(a)},
                    goto=nxt,
                )
                e("ls_in_port_sec", 90, "arp source", {**src, "eth_type": ETH_ARP, "arp_spa": _ip(a), "arp_sha": _mac(smac)}, goto=nxt)  # fmt: skip
            for a in [*v6, eui64_link_local(smac)]:
                e(
                    "ls_in_port_sec",
                    90,
                    "ipv6 source",
                    {**src, "eth_type": ETH_IP6, "ipv6_src": _ip(a)},
                    goto=nxt,
                )
            for icmp in (135, 143):  # duplicate address detection, MLD reports: from ::
                e("ls_in_port_sec", 90, "ipv6 unspecified source", {**src, "eth_type": ETH_IP6, "ipv6_src": (0, (1 << 128) - 1), "ip_proto": 58, "icmpv6_type": icmp}, goto=nxt)  # fmt: skip
            for et, what in ((ETH_IP, "ipv4"), (ETH_ARP, "arp"), (ETH_IP6, "ipv6")):
                e(
                    "ls_in_port_sec",
                    80,
                    f"{what} from another address: drop",
                    {**src, "eth_type": et},
                )
            e("ls_in_port_sec", 50, "other protocols from the port's MAC", src, goto=nxt)
    if not up:
        e("ls_out_port_sec", 100, "admin down: drop", {"metadata": vni, REG_OUTPORT: key})
        return e.out
    # -- ARP responder
    for a in port.ips:
        if ipaddress.ip_address(a).version != 4:
            continue
        req = {"metadata": vni, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": _ip(a)}
        e("ls_in_arp_rsp", 60, "own address: pass", {**req, REG_INPORT: key}, goto="ls_in_l2_lkup")
        e("ls_in_arp_rsp", 50, "arp reply from the model", req, apply=_arp_reply(mac, a))
    # -- ND responder: a solicitation for a known address is answered by the switch;
    # the owner's own, duplicate address detection (from ::) and one without a source
    # link-layer address (a unicast reachability probe) go on to the owner
    for a in port.ips:
        if ipaddress.ip_address(a).version != 6:
            continue
        ns = {"metadata": vni, "eth_type": ETH_IP6, "ip_proto": 58, "icmpv6_type": 135, "nd_target": _ip(a)}  # fmt: skip
        e("ls_in_arp_rsp", 60, "own address: pass", {**ns, REG_INPORT: key}, goto="ls_in_l2_lkup")
        e("ls_in_arp_rsp", 55, "duplicate address detection: pass", {**ns, "ipv6_src": (0, (1 << 128) - 1)}, goto="ls_in_l2_lkup")  # fmt: skip
        e("ls_in_arp_rsp", 55, "no source link-layer address: pass", {**ns, "nd_sll": 0}, goto="ls_in_l2_lkup")  # fmt: skip
        e("ls_in_arp_rsp", 50, "neighbour advertisement from the model", ns, apply=_na_reply(mac, a), goto="ls_in_nd_na")  # fmt: skip
        na = {**ns, "icmpv6_type": 136}
        e("ls_in_nd_na", 50, "the owner's link-layer address", na, apply=[SetField(_SLOT["nd_tll"], _mac(mac)), Output(OFPP_IN_PORT)])  # fmt: skip
    # -- L2 lookup
    to_me = [_load(REG_OUTPORT, key)]
    e("ls_in_l2_lkup", 50, "unicast to the port", {"metadata": vni, "eth_dst": _mac(mac)}, apply=to_me, goto="ls_out_port_sec")  # fmt: skip
    for pair in port.allowed_address_pairs:
        if pair.mac and pair.mac != mac:
            e("ls_in_l2_lkup", 50, "unicast to an address pair's MAC", {"metadata": vni, "eth_dst": _mac(pair.mac)}, apply=to_me, goto="ls_out_port_sec")  # fmt: skip
    # -- egress port security
    out = {"metadata": vni, REG_OUTPORT: key}
    e("ls_out_port_sec", 100, "never back to the sender", {**out, REG_INPORT: key})
    if not port.port_security:
        e("ls_out_port_sec", 50, "port security off", out, goto="phy_out")
    else:
        for smac in sorted({mac, *(p.mac for p in port.allowed_address_pairs if p.mac)}):
            e("ls_out_port_sec", 50, "frames for the port's MAC", {**out, "eth_dst": _mac(smac)}, goto="phy_out")  # fmt: skip
        e(
            "ls_out_port_sec",
            50,
            "broadcast and multicast",
            {**out, "eth_dst": MCAST},
            goto="phy_out",
        )
    return e.out


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


def network_flows(net: Network, ports: Sequence[Port]) -> list[LFlow]:
    """Broadcast, multicast, unknown unicast and neighbour solicitations of one network."""
    e = _Emit("network", net, net.id)
    if not net.admin_up:
        return e.out
    vni = net.segment_id or 0
    live = sorted((p for p in ports if p.admin_up), key=lambda p: p.tunnel_key or 0)

    def flood(rule: str, prio: int, match: dict[str, Any], keys: Iterable[int]) -> None:
        ks = tuple(keys)
        e("ls_in_l2_lkup", prio, rule, match, apply=deliver(ks), flood=ks)

    if live:
        flood("broadcast and multicast to the network's ports", 70, {"metadata": vni, "eth_dst": MCAST}, (p.tunnel_key or 0 for p in live))  # fmt: skip
    # a neighbour solicitation goes to the owner of its target only
    owners: dict[int, list[int]] = {}
    for p in live:
        for a in p.ips:
            ip = ipaddress.ip_address(a)
            if ip.version == 6:
                sn = int(ipaddress.IPv6Address("ff02::1:ff00:0")) | (int(ip) & 0xFFFFFF)
                owners.setdefault(sn, []).append(p.tunnel_key or 0)
    for sn, keys in sorted(owners.items()):
        flood("neighbour solicitation to the target's owner", 75, {"metadata": vni, "eth_dst": MCAST, "eth_type": ETH_IP6, "ipv6_dst": (sn, (1 << 128) - 1), "ip_proto": 58, "icmpv6_type": 135}, sorted(keys))  # fmt: skip
    open_ports = [p.tunnel_key or 0 for p in live if not p.port_security]
    if open_ports:
        flood("unknown unicast to ports without port security", 10, {"metadata": vni}, open_ports)  # fmt: skip
    return e.out


def deliver(keys: Iterable[int]) -> list[Action]:
    """Each logical port in turn through egress port security and out."""
    out_t = table("ls_out_port_sec")
    acts: list[Action] = []
    for k in keys:
        acts += [_load(REG_OUTPORT, k), Resubmit(None, out_t)]
    return acts


@dataclass
class Compiler:
    """Memoised compile: `compile(state)` recomputes only objects whose inputs changed."""

    _memo: dict[tuple[str, str], tuple[Hashable, list[LFlow]]] = field(default_factory=dict)
    recompiled: int = 0  # objects compiled by the last call (the rest came from the memo)

    def _cached(
        self, key: tuple[str, str], sig: Hashable, fn: Callable[[], list[LFlow]]
    ) -> list[LFlow]:
        hit = self._memo.get(key)
        if hit is not None and hit[0] == sig:
            return hit[1]
        flows = fn()
        self._memo[key] = (sig, flows)
        self.recompiled += 1
        return flows

    def compile(self, state: State) -> list[LFlow]:
        self.recompiled = 0
        out = default_flows()
        seen: set[tuple[str, str]] = set()
        ports_by_net: dict[str, list[Port]] = {}
        for p in state.all("port"):
            ports_by_net.setdefault(p.network, []).append(p)
        for net in state.all("network"):
            ports = ports_by_net.get(net.id, [])
            nsig = (net.name, net.segment_id, net.admin_up)
            psigs = tuple(
                sorted((p.tunnel_key, p.admin_up, p.port_security, tuple(p.ips)) for p in ports)
            )
            k = ("network", net.id)
            seen.add(k)
            out += self._cached(k, (nsig, psigs), lambda n=net, ps=ports: network_flows(n, ps))  # type: ignore[misc]
            for p in ports:
                k = ("port", p.id)
                seen.add(k)
                sig = (nsig, p.spec_key())
                out += self._cached(k, sig, lambda n=net, q=p: port_flows(n, q))  # type: ignore[misc]
        for k in list(self._memo):
            if k not in seen:
                del self._memo[k]
        out.sort(key=_order)
        return out


def _order(lf: LFlow) -> tuple[int, int, str, str]:
    return lf.order

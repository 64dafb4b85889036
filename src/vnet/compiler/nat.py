"""Floating IPs and port forwardings: a router's 1:1 and per-port NAT, per floating IP.

A floating IP is an address of an external network that a router translates
to one of its ports' addresses, through the router's conntrack zone
(`REG_RZONE`, one per router and chassis, so two tenants with the same
internal subnet translate independently) -- as OVN's `dnat_and_snat`:
- `lr_in_dnat`: from outside, by the gateway, to the floating IP:
  `ct(commit, nat(dst=PORT))` -- a new connection is translated in, and a
  reply to one of the port's own is untranslated by the same call (an
  existing connection takes its own translation);
- `lr_out_snat`: out of the gateway from the port's address:
  `ct(commit, nat(src=FIP))` -- the port's connections leave from its
  floating IP, and replies to translated-in ones are untranslated;
- port forwardings: `ip:port` of the floating IP to a port's `ip:port`, TCP or
  UDP; what is not forwarded is dropped, replies untranslated by the gateway's
  catch-all (`router._gateway_nat`).

Where.  A floating IP of a port whose chassis has an uplink on the external
network's physnet is *distributed* (OVN's distributed floating IPs): it is
translated on the port's own chassis, which answers ARP for it with the
floating IP's own MAC (`FloatingIP.mac`), takes frames for that MAC into the
router there, and routes the port's traffic out of the gateway itself (a
flow above the route's chassis redirect, for the port's address only) with
that MAC as source -- so the physical network learns where the port is.
Otherwise -- and for port forwardings -- the router's active gateway chassis
translates it and answers ARP for it with the gateway's MAC; the builder is
given that chassis as a value (`_objects`' args), so a failover rebuilds it.
Those resident flows stand down while that chassis is isolated, as the
gateway's own (`router.gateway_stands_down`); a distributed one's do not:
no other chassis could take it over.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..model.l3 import active_gateway, routers_of
from ..model.objects import Chassis, FloatingIP, Network, Port, Router
from ..model.routing import Interface, RouteEntry, build, interfaces
from ..model.rules import State
from ..pipeline.actions import Action, Ct, Nat, SetField
from ..pipeline.fields import lookup
from .logical import Kind, LFlow, To, _Emit, datapath_kind
from .router import (
    ETH_ARP,
    ETH_IP,
    _Datapath,
    _live,
    _mac,
    _prefix,
    answer_arp,
    asking,
    gateway_routes,
    gateway_stands_down,
    numbered,
    route_actions,
    route_match,
    route_priority,
    router_key,
    rzone,
)
from .stages import LOCALNET_KEY, NEXT, REG_INPORT, REG_OUTPORT, resolve

__all__ = ["FLOATING_IPS", "distributed"]

_PROTO = {"tcp": 6, "udp": 17}


def distributed(fip: FloatingIP, port: Port | None, net: Network, chassis: Chassis | None) -> bool:
    """Whether `fip` is translated on its port's own chassis (it has the physnet)."""
    return (
        port is not None
        and fip.port == port.id
        and chassis is not None
        and (net.physnet or "") in chassis.physnets
    )


def _v4(port: Port) -> str | None:
    return next((a for a in port.ips if ipaddress.ip_address(a).version == 4), None)


def _objects(state: State) -> list[tuple[str, tuple[Any, ...], tuple[Any, ...]]]:
    """Each floating IP with its network, router, ports and the port's chassis; the
    router's interfaces and the routes that leave by its gateway as values."""
    out = []
    for f in state.all("floating_ip"):
        net = state.get("network", f.network)
        names = [f.port] if f.port else [pf.port for pf in f.port_forwardings]
        ports = [p for pid in names if (p := state.get("port", pid)) is not None]
        if net is None or not ports or f.ip is None:
            continue
        routers = routers_of(state, ports[0], net.id)
        if not routers:
            continue
        r = routers[0]
        ch = state.get("chassis", ports[0].chassis) if ports[0].chassis else None
        itfs = tuple(_live(interfaces(state, r)))
        out.append((f.id, (f, net, r, ch, *ports), (itfs, active_gateway(r, state))))
    return out


def fip_flows(
    f: FloatingIP, net: Network, r: Router, ch: Chassis | None, *rest: Any
) -> list[LFlow]:
    """The floating IP's flows: in its router, and on its external network's switch."""
    *ports, itfs, gw = rest
    gw4 = next((i for i in itfs if i.gateway and i.family == 4), None)
    if gw4 is None or gw is None or r.tunnel_key is None or not r.admin_up or f.ip is None:
        return []
    e = _Emit("floating_ip", f, _Datapath(r.id), key=router_key(r))
    s = _Emit("floating_ip", f, net)
    zone = rzone()
    dnat_in = {REG_INPORT: gw4.number, "eth_type": ETH_IP, "ipv4_dst": _prefix(f.ip)}
    by_port = {p.id: p for p in ports}
    port = by_port.get(f.port or "")
    where = (gw, True)
    down = gateway_stands_down(r, gw)  # on the gateway: not while isolated
    mac = gw4.mac or ""
    if port is not None:
        x = _v4(port)
        if x is None:
            return []
        local = distributed(f, port, net, ch)
        if local and ch is not None:
            where, mac, down = (ch.id, True), f.mac or "", False
            _distributed(e, s, f, port, x, gw4, itfs, r, where)
        e("lr_in_dnat", 100, f"{f.ip} -> port {port.name} ({x})", dnat_in,
          apply=[Ct(commit=True, zone_field=zone, nat=Nat("dst", x),
                    table=resolve("lr_in_dnat", NEXT))])  # fmt: skip
        snat: list[Action | To] = [SetField(_field("eth_src"), _mac(mac))] if local else []
        snat.append(Ct(commit=True, zone_field=zone, nat=Nat("src", f.ip),
                       table=resolve("lr_out_snat", NEXT)))  # fmt: skip
        e("lr_out_snat", 110, f"port {port.name} ({x}) as {f.ip}",
          {REG_OUTPORT: gw4.number, "eth_type": ETH_IP, "ipv4_src": _prefix(x)}, apply=snat)  # fmt: skip
    for i, pf in enumerate(f.port_forwardings):
        p = by_port.get(pf.port)
        x = pf.internal_ip or (_v4(p) if p is not None else None)
        if p is None or x is None:
            continue
        e("lr_in_dnat", 110, f"{pf.protocol} {f.ip}:{pf.external_port} -> port {p.name} "
          f"({x}:{pf.internal_port}) (port_forwardings.{i})",
          {**dnat_in, "ip_proto": _PROTO[pf.protocol], "tp_dst": pf.external_port},
          apply=[Ct(commit=True, zone_field=zone, nat=Nat("dst", x, port_min=pf.internal_port),
                    table=resolve("lr_in_dnat", NEXT))])  # fmt: skip
    if f.port_forwardings:
        e("lr_in_dnat", 90, f"{f.ip}: a reply untranslated", dnat_in,
          apply=[Ct(zone_field=zone, nat=Nat(), table=resolve("lr_in_dnat", NEXT))])  # fmt: skip
    s("ls_in_l2_lkup", 80, f"from outside, asked for floating IP {f.ip}: to the router",
      {REG_INPORT: LOCALNET_KEY, **asking(f.ip)},
      apply=[SetField(_field(REG_OUTPORT), gw4.tunnel_key or 0)], goto=NEXT, resident=where,
      stands_down=down)  # fmt: skip
    e("lr_in_ip_input", 120, f"gateway: arp reply for floating IP {f.ip}",
      {REG_INPORT: gw4.number, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": _prefix(f.ip)},
      apply=answer_arp(mac, f.ip, gw4), resident=where, stands_down=down)  # fmt: skip
    return e.out + s.out


def _field(name: str) -> int:
    return lookup(name).index


def _distributed(
    e: _Emit, s: _Emit, f: FloatingIP, port: Port, x: str, gw4: Interface,
    itfs: tuple[Interface, ...], r: Router, where: tuple[str, bool],
) -> None:  # fmt: skip
    """On the port's chassis: the floating IP's MAC into the router's gateway, and the
    port's traffic out of the gateway routed here (above the routes' redirect)."""
    mac = _mac(f.mac or "")
    s("ls_in_l2_lkup", 50, f"unicast to floating IP {f.ip}'s MAC: the router's gateway",
      {"eth_dst": mac}, apply=[SetField(_field(REG_OUTPORT), gw4.tunnel_key or 0)], goto=NEXT,
      resident=where)  # fmt: skip
    for kind in (ETH_IP, ETH_ARP):
        e("lr_in_admission", 50, f"gateway: {'IPv4' if kind == ETH_IP else 'ARP'} to floating "
          f"IP {f.ip}'s MAC", {REG_INPORT: gw4.number, "eth_dst": mac, "eth_type": kind},
          goto=NEXT, resident=where)  # fmt: skip
    routes: list[RouteEntry] = build(r, itfs)
    by_no = {i.number: i for i in itfs}
    out = {id(rt) for rt in gateway_routes(routes, itfs)}
    for rt, n in numbered(routes):
        if id(rt) not in out or rt.family != 4:
            continue
        rule, acts, goto, g = route_actions(r, rt, by_no, n)
        e("lr_in_ip_routing", route_priority(rt) + 1, f"{rule}: from port {port.name} "
          f"({x}) routed here (distributed floating IP {f.ip})",
          {**route_match(rt), "ipv4_src": _prefix(x)}, apply=acts, goto=goto, group=g,
          resident=where)  # fmt: skip


FLOATING_IPS = datapath_kind(
    Kind("floating_ip", _objects, fip_flows, lambda state: {}, lambda *a: [])
)

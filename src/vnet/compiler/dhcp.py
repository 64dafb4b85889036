"""DHCP, DHCPv6 and router solicitations: answered from the model, by the controller.

No DHCP server process and nothing broadcast over the overlay: in the
logical switch's ingress, after port security (`ls_in_port_sec`: a request
that fails it is dropped there), `ls_in_dhcp` sends a port's

- DHCPv4 requests (udp 68 -> 67, to whatever address: a renewal comes
  unicast to the server identifier, the router's address and MAC, and is
  punted here before the lookup takes it to the router), when the port has
  an address on a subnet with `dhcp: true`;
- DHCPv6 requests (udp 546 -> 547 to ff02::1:2) when it has one on a subnet
  whose `ipv6_mode` is `dhcpv6-stateful` or `dhcpv6-stateless`;
- router solicitations (ICMPv6 133) when it has one on a subnet with any
  `ipv6_mode`

to the controller (`controller(reason=action)`), by a flow whose cookie
`punts(lflows)` maps to a `Punt`: the kind and the port.  The controller
(`controller.dhcp`) answers from the model with a packet-out straight back
out of the port.  A client with no address yet sends from 0.0.0.0, which
port security admits (from the port's MAC, UDP only) for this stage, which
drops whatever of it is no DHCP request.  The firewall never filters DHCP
(`acl`), and these frames never reach it anyway.

On a subnet no router is on (and not an external network's, whose gateway is
the upstream router), the server's address (the subnet's gateway) is
nobody's, yet a renewal goes unicast to it: the switch answers the port's
ARP for it with the server's MAC (`controller.dhcp.server_mac`), so the
renewal is sent -- and punted here.

The context is per tenant: each subnet's id, family, `dhcp` and
`ipv6_mode` (`Feature`), and the unrouted IPv4 subnets' gateway and server
MAC: a port's flows are rebuilt when one of its tenant's subnets changes any
of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..model.objects import Network, Port
from ..model.state import State, derived_mac
from ..pipeline.actions import OFPP_CONTROLLER, Output
from .logical import Feature, LFlow, _Emit, feature
from .stages import NEXT, REG_INPORT
from .switch import _arp_reply

__all__ = ["KINDS", "Punt", "punts"]

ETH_IP, ETH_ARP, ETH_IP6 = 0x0800, 0x0806, 0x86DD
KINDS = ("dhcpv4", "dhcpv6", "rs")
_ALL_DHCP_SERVERS = (0xFF020000000000000000000000010002, (1 << 128) - 1)
_ZERO4 = (0, 0xFFFFFFFF)


@dataclass(frozen=True)
class Punt:
    """What a DHCP flow's packet-in means: answer `kind` for `port` (its id)."""

    kind: str  # dhcpv4 | dhcpv6 | rs
    port: str
    subnet: str  # the port's subnet the answer configures


class _Subnets(NamedTuple):
    """A tenant's subnets as this feature reads them: (id, version, dhcp, ipv6_mode), and
    for an IPv4 subnet no router is on, its gateway and the DHCP server's MAC there."""

    subnets: tuple[tuple[str, int, bool, str | None], ...]
    unrouted: tuple[tuple[str, str, str], ...] = ()  # (subnet id, gateway, server MAC)


def punts(lflows: Iterable[LFlow]) -> dict[int, Punt]:
    """cookie -> Punt, for every DHCP flow that sends to the controller."""
    return {lf.flow.cookie: lf.punt for lf in lflows if isinstance(lf.punt, Punt)}


def _context(state: State, prev: Mapping[str, Any] | None) -> Mapping[str, Any]:
    by_tenant: dict[str, list[tuple[str, int, bool, str | None]]] = {}
    alone: dict[str, list[tuple[str, str, str]]] = {}
    routed = {i.subnet for r in state.all("router") for i in r.interfaces}
    for s in state.all("subnet"):
        by_tenant.setdefault(s.tenant, []).append((s.id, s.ip_version, s.dhcp, s.ipv6_mode))
        net = state.get("network", s.network)
        outside = net is None or net.external  # there, the gateway is the upstream router
        if s.ip_version == 4 and s.dhcp and s.gateway and s.id not in routed and not outside:
            mac = derived_mac(s.network, "dhcp")
            alone.setdefault(s.tenant, []).append((s.id, s.gateway, mac))
    return {
        t: _Subnets(tuple(sorted(v)), tuple(sorted(alone.get(t, ())))) for t, v in by_tenant.items()
    }


def _served(port: Port, ctx: _Subnets) -> list[tuple[str, str]]:
    """(kind, subnet id) the port is answered for, each kind once."""
    subs = {sid: (v, dhcp, mode) for sid, v, dhcp, mode in ctx.subnets}
    out: dict[str, str] = {}
    for f in port.fixed_ips:
        if f.subnet is None or f.subnet not in subs or f.ip is None:
            continue
        v, dhcp, mode = subs[f.subnet]
        if v == 4 and dhcp:
            out.setdefault("dhcpv4", f.subnet)
        if v == 6 and mode in ("dhcpv6-stateful", "dhcpv6-stateless"):
            out.setdefault("dhcpv6", f.subnet)
        if v == 6 and mode is not None:
            out.setdefault("rs", f.subnet)
    return sorted(out.items())


def port_flows(net: Network, port: Port, ctx: _Subnets) -> list[LFlow]:
    e = _Emit("port", port, net)
    if not (port.admin_up and net.admin_up) or port.tunnel_key is None:
        return e.out
    me: dict[str, Any] = {REG_INPORT: port.tunnel_key}
    to_controller = [Output(OFPP_CONTROLLER)]
    for kind, sub in _served(port, ctx):
        punt = Punt(kind, port.id, sub)
        if kind == "dhcpv4":
            m: dict[str, Any] = {
                **me,
                "eth_type": ETH_IP,
                "ip_proto": 17,
                "tp_src": 68,
                "tp_dst": 67,
            }
            e("ls_in_dhcp", 100, "dhcpv4 request: to the controller", m, to_controller, punt=punt)
            server = next(((gw, mac) for sid, gw, mac in ctx.unrouted if sid == sub), None)
            if server is not None:  # a renewal goes unicast to the server: it must be found
                gw, mac = server
                e("ls_in_arp_rsp", 50, f"arp reply for the DHCP server {gw} (no router on the subnet)",
                  {**me, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": (int(ipaddress.IPv4Address(gw)), 0xFFFFFFFF)},
                  apply=_arp_reply(mac, gw))  # fmt: skip
            if port.port_security and port.mac:
                src = {**me, "eth_src": int(port.mac.replace(":", ""), 16), "eth_type": ETH_IP}
                e("ls_in_port_sec", 95, "dhcpv4 client without an address", {**src, "ipv4_src": _ZERO4, "ip_proto": 17}, goto=NEXT)  # fmt: skip
                e("ls_in_dhcp", 90, "from 0.0.0.0 but no dhcpv4 request: drop", {**me, "eth_type": ETH_IP, "ipv4_src": _ZERO4})  # fmt: skip
        elif kind == "dhcpv6":
            m = {**me, "eth_type": ETH_IP6, "ip_proto": 17, "tp_src": 546}
            m.update(tp_dst=547, ipv6_dst=_ALL_DHCP_SERVERS)
            e("ls_in_dhcp", 100, "dhcpv6 request: to the controller", m, to_controller, punt=punt)
        else:
            m = {**me, "eth_type": ETH_IP6, "ip_proto": 58, "icmpv6_type": 133}
            e("ls_in_dhcp", 100, "router solicitation: to the controller", m, to_controller, punt=punt)  # fmt: skip
    return e.out


DHCP = feature(Feature("dhcp", _context, lambda: [], lambda c: [], port_flows))

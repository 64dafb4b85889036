"""How a lab's workload is addressed: its addresses, its default routes, names.

A workload gets its port's addresses statically, each with its subnet's
prefix length.  A subnet that is an interface of a router is routed: the
workload's default route for that family goes via the subnet's gateway (the
router's address there), as a DHCP offer or a router advertisement would
give it; the first routed subnet of a family wins, and a workload on no
routed subnet has no default route (the lab never invents a way out).  The
model's IPv6 gateway is the router's global address on the subnet, so the
route needs no link-local address.  Names: every port of the workload's
tenant, by its addresses, as a hosts file (`ping db1`).  Pure: the model's
rows (as the API gives them) in, plain values out; shared by the real lab
and the simulated one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Address", "addresses", "default_routes", "hosts_file", "routed_subnets"]


@dataclass(frozen=True)
class Address:
    """One of a workload's addresses: `ip/prefix`, and the gateway if its subnet is routed."""

    ip: str
    prefix: int
    version: int
    gateway: str | None = None

    @property
    def interface(self) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
        return ipaddress.ip_interface(f"{self.ip}/{self.prefix}")


def routed_subnets(routers: Iterable[Mapping[str, Any]]) -> set[str]:
    """The ids of the subnets some router has an interface on."""
    return {str(i["subnet"]) for r in routers for i in r.get("interfaces") or ()}


def addresses(
    port: Mapping[str, Any], subnets: Mapping[str, Mapping[str, Any]], routed: set[str]
) -> list[Address]:
    """A port's addresses, in the port's order, with their subnets' gateways where routed."""
    out = []
    for fip in port.get("fixed_ips") or ():
        sub = subnets[str(fip["subnet"])]
        net = ipaddress.ip_network(str(sub["cidr"]))
        gw = sub.get("gateway") if str(fip["subnet"]) in routed else None
        out.append(Address(str(fip["ip"]), net.prefixlen, net.version, str(gw) if gw else None))
    return out


def default_routes(addrs: Iterable[Address]) -> dict[int, str]:
    """IP version -> the gateway of the workload's default route in that family."""
    routes: dict[int, str] = {}
    for a in addrs:
        if a.gateway is not None:
            routes.setdefault(a.version, a.gateway)
    return routes


def hosts_file(ports: Iterable[Mapping[str, Any]]) -> str:
    """/etc/hosts naming each port by its addresses (the resolver picks the family:
    `ping -4 db1`, `ping -6 db1`)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    rows = [(str(f["ip"]), str(p["name"])) for p in ports for f in p.get("fixed_ips") or ()]
    rows.sort(key=lambda r: (":" in r[0], r[1]))
    lines += [f"{ip}\t{name}" for ip, name in rows]
    return "\n".join(lines) + "\n"

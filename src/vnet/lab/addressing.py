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

`addressing: dhcp` at the top of a lab file (`mode`; the default is
`static`) says the workloads start with no address and ask: IPv4 by DHCP,
with busybox's `udhcpc -f -s SCRIPT` as a process of the lab (its PID
recorded and stopped on `down` like every other), and IPv6 by SLAAC from
the router's advertisements (accept_ra=2, autoconf).  `udhcpc_script` is
the script the client runs on each event: it sets the address with its
prefix, the routes (option 121 when given -- the default route among them
--, else option 3's router), the MTU (option 26), and writes the DNS servers
to the resolv.conf path it is given (the workload's
`/etc/netns/NS/resolv.conf`), never the host's; it prints one line per
event (`vnet-dhcp bound 10.0.1.10/24 lease 600`), so the client's log
shows each lease and renewal.  Per-port addressing is not offered: one
lab, one way.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MODES",
    "Address",
    "addresses",
    "default_routes",
    "hosts_file",
    "mode",
    "routed_subnets",
    "udhcpc_script",
]

MODES = ("static", "dhcp")


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


def mode(doc: Mapping[str, Any]) -> str:
    """The lab file's `addressing` (static unless given); a clear error for another."""
    m = doc.get("addressing", "static")
    if m not in MODES:
        raise ValueError(f"addressing: {m!r}, one of {', '.join(MODES)}")
    return str(m)


_SCRIPT = """#!/bin/sh
# udhcpc event script of a vnet lab workload: $1 is the event, options are in the environment
resolv=%(resolv)s
event=$1
case "$event" in
  deconfig)
    ip -4 addr flush dev "$interface"
    echo "vnet-dhcp deconfig"
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    ip -4 route flush dev "$interface" proto static 2>/dev/null
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do
        ip -4 route replace "$1" via "$2" dev "$interface" proto static
        shift 2
      done
    elif [ -n "$router" ]; then
      ip -4 route replace default via "${router%%%% *}" dev "$interface" proto static
    fi
    : > "$resolv"
    for d in $dns; do echo "nameserver $d" >> "$resolv"; done
    echo "vnet-dhcp $event $ip/$mask lease $lease mtu $mtu router $router dns $dns"
    ;;
  leasefail|nak)
    echo "vnet-dhcp $event $message"
    ;;
esac
exit 0
"""


def udhcpc_script(resolv: str) -> str:
    """The event script of busybox's udhcpc (see the design note); `resolv` is where the
    DNS servers go."""
    if not resolv or "'" in resolv:
        raise ValueError(f"resolv: {resolv!r} is no usable path")
    return _SCRIPT % {"resolv": f"'{resolv}'"}

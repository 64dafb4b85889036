"""A router's learned neighbours: what admission checks of one before it is stored.

The controller learns a router's neighbours from ARP and neighbour
discovery (`controller.neighbour`) and keeps them in the store as objects of
a system-written kind (`objects.Neighbour`, OVN's MAC_Binding), so every
controller compiles the same flows from them.  Users read them (`vnet get
neighbours`, the REST list) and never write them: the northbound refuses a
create, update, delete or file entry of a kind in `SYSTEM_KINDS`, naming it.

One binding is (router, network, address) -> MAC.  Its id is derived from
the three (`neighbour_id`), so two controllers that learn the same binding
write the same object, and its name is the address (IPv6 `:` written `-`,
as names allow).  `admit_neighbour` takes only a binding the router can use:
the router exists, the address is a usable address of one of the router's
subnets on that network (its gateway's too) and not the router's own there;
the tenant is the router's.  A router's deletion takes its neighbours with it
(`rules.plan_delete`); a binding whose interface went away is left to the
controller's aging (`orphans`), and the compiler ignores it meanwhile.
"""

from __future__ import annotations

import hashlib
import ipaddress

from .objects import Neighbour, Resource, Router
from .routing import Interface, interfaces
from .state import ModelError, State

__all__ = ["admit_neighbour", "neighbour_id", "neighbour_name", "on_interface", "orphans"]


def neighbour_id(router: str, network: str, ip: str) -> str:
    """The id of the binding of `ip` on `network` for `router`: the same for every writer."""
    a = str(ipaddress.ip_address(ip))
    return "nb-" + hashlib.sha256(f"{router}/{network}/{a}".encode()).hexdigest()[:32]


def neighbour_name(ip: str) -> str:
    return str(ipaddress.ip_address(ip)).replace(":", "-")


def on_interface(state: State, router: Router, network: str, ip: str) -> Interface | None:
    """The router's interface (gateway included) on `network` whose subnet `ip` is a
    usable address of, and not the router's own address there; else None."""
    a = ipaddress.ip_address(ip)
    for itf in interfaces(state, router):
        if itf.network != network or itf.family != a.version or a not in itf.prefix:
            continue
        net = itf.prefix
        if a == net.network_address or (a.version == 4 and a == net.broadcast_address):
            return None
        if a == ipaddress.ip_address(itf.address):
            return None
        return itf
    return None


def admit_neighbour(state: State, obj: Resource, old: Resource | None) -> Resource:
    """`obj` completed (tenant, id, name) or refused naming the field."""
    assert isinstance(obj, Neighbour)
    r = state.get("router", obj.router)
    if not isinstance(r, Router):
        raise ModelError("invalid", ("router",), f"no router {obj.router!r}")
    if state.get("network", obj.network) is None:
        raise ModelError("invalid", ("network",), f"no network {obj.network!r}")
    if on_interface(state, r, obj.network, obj.ip) is None:
        raise ModelError(
            "invalid", ("ip",),
            f"{obj.ip} is no neighbour address of router {r.name!r} on that network (not on "
            "its subnets there, or the router's own, or a network or broadcast address)",
        )  # fmt: skip
    want = neighbour_id(obj.router, obj.network, obj.ip)
    if old is not None and old.id != want:
        raise ModelError("invalid", ("id",), "a neighbour's id is its router, network and ip's")
    return obj.changed(id=want, name=neighbour_name(obj.ip), tenant=r.tenant)


def orphans(state: State) -> list[Neighbour]:
    """Bindings no router can use any more (its router gone, or its interface)."""
    out = []
    for n in state.all("neighbour"):
        r = state.get("router", n.router)
        if not isinstance(r, Router) or on_interface(state, r, n.network, n.ip) is None:
            out.append(n)
    return out

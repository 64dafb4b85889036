"""What one object cannot check alone: references, uniqueness, allocation.

`admit(state, obj, old)` takes an object that is valid on its own and the
snapshot it is about to join, checks it against every other object, fills
in what was left to allocate (a VNI, a MAC, fixed IPs), and returns the
completed object -- or raises `ModelError` naming the field.  `plan_delete`
says what removing an object takes (refused while something depends on it,
unless cascading is asked for).  Both are pure: the snapshot is never
changed, so a refused request leaves nothing behind, and a file of many
objects is admitted one by one against an evolving copy before any of it is
stored.

Security groups and policies are checked here for what needs the rest of
the model: the groups a port lists and the groups rules name exist in the
object's own tenant (a group's rule may name the group itself, by name,
before it exists), names are unique per tenant, and so are policy
priorities.  A group is not deleted while a port lists it (a cascade takes
it off those ports) or a rule names it (refused even when cascading:
dropping a rule would change what it decides).

Routers and floating IPs are admitted by `l3`, which the other kinds ask
too: a port never takes a router port's key or MAC, a gateway's or a
floating IP's address, and on a SLAAC subnet its address is its MAC's
EUI-64; a network, chassis, subnet or port does not change, and nothing is
deleted, from under a router or floating IP (refused even when cascading: a
router's interfaces and a floating IP's port are changed on purpose; a
tenant's cascade takes its own floating IPs and routers first).  The
snapshot and `ModelError` live in `state`.

A router's learned neighbours (`neighbour`, written by the controller only)
are admitted by `neighbour` and go with their router when it is deleted; a
chassis' BFD report (`bfd_status`, also the controller's) goes with the
chassis, and the others' sessions to it with it.

Allocation is deterministic: the lowest free VNI, the lowest free address of
a subnet's pools, a MAC derived from the port's id.  The same requests in
the same order give the same model.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from ..ids import datapath_id
from . import l3
from .liveness import admit_bfd_status, admit_chassis_status
from .neighbour import admit_neighbour
from .objects import (
    MAX_PORT_KEY,
    MAX_VNI,
    Chassis,
    FixedIP,
    Network,
    Policy,
    Port,
    Resource,
    SecurityGroup,
    Subnet,
    Tenant,
)
from .state import Change, ModelError, State, allocate, derived_mac, in_tenant, unique_name

__all__ = ["Change", "ModelError", "State", "admit", "naming_rules", "plan_delete", "resolve"]


# -- references ------------------------------------------------------------------------
REFS: dict[str, tuple[tuple[str, str], ...]] = {
    "network": (("tenant", "tenant"),),
    "subnet": (("network", "network"),),
    "port": (("network", "network"), ("chassis", "chassis")),
}


TENANTED = ("network", "subnet", "port", "security_group", "policy", "router", "floating_ip")


def resolve(state: State, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """Names in reference fields become ids (a user writes `network: web`)."""
    out = dict(data)
    tenant = out.get("tenant")
    if kind in TENANTED and isinstance(tenant, str) and tenant:
        t = state.find("tenant", tenant)
        if t is None:
            raise ModelError("invalid", ("tenant",), f"no tenant {tenant!r}")
        out["tenant"] = tenant = t.id
    for fname, target in REFS.get(kind, ()):
        ref = out.get(fname)
        if fname == "tenant" or not isinstance(ref, str) or not ref:
            continue
        scope = tenant if target != "chassis" else None
        o = state.find(target, ref, scope if isinstance(scope, str) and scope else None)
        if o is None:
            raise ModelError("invalid", (fname,), f"no {target} {ref!r}")
        out[fname] = o.id
    if kind == "port":
        for i, fip in enumerate(out.get("fixed_ips") or []):
            ref = fip.get("subnet") if isinstance(fip, dict) else None
            if ref:
                s = state.find("subnet", ref)
                if s is None:
                    raise ModelError("invalid", ("fixed_ips", i, "subnet"), f"no subnet {ref!r}")
                out["fixed_ips"] = [*out["fixed_ips"]]
                out["fixed_ips"][i] = {**fip, "subnet": s.id}
        nid = out.get("network")
        net = state.get("network", nid) if isinstance(nid, str) else None
        if net is not None and isinstance(out.get("security_groups"), list):
            out["security_groups"] = _resolve_groups(state, out["security_groups"], net.tenant)
    if kind in ("security_group", "policy") and isinstance(tenant, str) and "rules" in out:
        out["rules"] = _resolve_rules(state, out.get("rules"), tenant)
    if kind in ("router", "floating_ip"):
        l3.resolve_refs(state, kind, out, tenant if isinstance(tenant, str) and tenant else None)
    return out


def _resolve_groups(state: State, refs: list[Any], tenant: str) -> list[Any]:
    out = []
    for i, ref in enumerate(refs):
        if isinstance(ref, str) and ref:
            g = state.find("security_group", ref, tenant)
            if g is None:
                where = state._tenant_name(tenant)
                raise ModelError(
                    "invalid",
                    ("security_groups", i),
                    f"no security group {ref!r} in tenant {where!r}",
                )
            ref = g.id
        out.append(ref)
    return out


def _resolve_rules(state: State, rules: Any, tenant: str) -> Any:
    """Group names in rules' remotes become ids; a name not found is left for `admit`."""
    if not isinstance(rules, list):
        return rules
    out = []
    for r in rules:
        if isinstance(r, Mapping):
            r = dict(r)
            for side in ("from", "to"):
                peer = r.get(side)
                ref = peer.get("group") if isinstance(peer, Mapping) else None
                if isinstance(peer, Mapping) and isinstance(ref, str) and ref:
                    g = state.find("security_group", ref, tenant)
                    if g is not None:
                        r[side] = {**peer, "group": g.id}
        out.append(r)
    return out


# -- admission ------------------------------------------------------------------------
def admit(state: State, obj: Resource, old: Resource | None = None) -> Resource:
    """`obj` checked against `state` and completed; ModelError if it cannot join."""
    if old is not None and old.kind != obj.kind:
        raise ModelError("invalid", ("kind",), "an object cannot change its kind")
    fn = _ADMIT[obj.kind]
    return fn(state, obj, old)


def _admit_tenant(state: State, obj: Resource, old: Resource | None) -> Resource:
    unique_name(state, obj, None)
    return obj


def _admit_chassis(state: State, obj: Resource, old: Resource | None) -> Resource:
    assert isinstance(obj, Chassis)
    unique_name(state, obj, None)
    if obj.datapath_id is None:
        obj = obj.changed(datapath_id=f"{datapath_id(obj.name):016x}")
        assert isinstance(obj, Chassis)
    for o in state.all("chassis"):
        if o.id != obj.id and o.datapath_id == obj.datapath_id:
            raise ModelError(
                "conflict", ("datapath_id",), f"{obj.datapath_id} is chassis {o.name!r}'s"
            )
        if o.id != obj.id and obj.underlay is not None and o.underlay == obj.underlay:
            raise ModelError("conflict", ("underlay",), f"{obj.underlay} is chassis {o.name!r}'s")
    if obj.underlay is not None and ":" in obj.underlay:
        raise ModelError("invalid", ("underlay",), "tunnels run over IPv4 underlays only")
    if obj.switch == "ovs" and obj.encap == "nvgre":
        raise ModelError("invalid", ("encap",), "Open vSwitch has no NVGRE port: vxlan or geneve")
    room = obj.overlay_mtu
    for n in state.all("network"):
        if n.mtu is not None and n.mtu > room:
            raise ModelError(
                "invalid", ("underlay_mtu",),
                f"{obj.encap} over an underlay MTU of {obj.underlay_mtu} carries {room} bytes; "
                f"network {n.name!r} has MTU {n.mtu}",
            )  # fmt: skip
    l3.chassis_uplinks(state, obj)
    return obj


def overlay_mtu(state: State) -> tuple[int, Chassis | None]:
    """The largest network MTU every chassis' tunnels carry, and the chassis that sets it."""
    narrowest = min(state.all("chassis"), key=lambda c: c.overlay_mtu, default=None)
    if narrowest is None:  # no chassis yet: the defaults' (Geneve over 1500)
        return Chassis(name="default").overlay_mtu, None
    return narrowest.overlay_mtu, narrowest


def _admit_network(state: State, obj: Resource, old: Resource | None) -> Resource:
    assert isinstance(obj, Network)
    if state.get("tenant", obj.tenant) is None:
        raise ModelError("invalid", ("tenant",), f"no tenant {obj.tenant!r}")
    if old is not None and old.tenant != obj.tenant:  # type: ignore[attr-defined]
        raise ModelError("invalid", ("tenant",), "a network cannot move to another tenant")
    unique_name(state, obj, obj.tenant)
    room, ch = overlay_mtu(state)
    if obj.mtu is None:
        obj = obj.changed(mtu=room)
    elif obj.mtu > room:
        why = f"chassis {ch.name!r} ({ch.encap} over an underlay MTU of {ch.underlay_mtu})" if ch else "the default underlay (geneve over MTU 1500)"  # fmt: skip
        raise ModelError("invalid", ("mtu",), f"MTU {obj.mtu} is more than {why} carries: at most {room}")  # fmt: skip
    assert isinstance(obj, Network)
    used = {n.segment_id: n for n in state.all("network") if n.id != obj.id}
    if obj.segment_id is None:
        vni = next((v for v in range(1, MAX_VNI + 1) if v not in used), None)
        if vni is None:
            raise ModelError("conflict", ("segment_id",), "every segment id is in use")
        obj = obj.changed(segment_id=vni)
    elif obj.segment_id in used:
        other = used[obj.segment_id]
        raise ModelError(
            "conflict", ("segment_id",), f"VNI {obj.segment_id} is in use by network {other.name!r}"
        )
    assert isinstance(obj, Network)
    if obj.external:
        for n in state.all("network"):
            if n.id != obj.id and n.external and (n.physnet, n.vlan) == (obj.physnet, obj.vlan):
                seg = f"VLAN {obj.vlan}" if obj.vlan is not None else "the untagged segment"
                raise ModelError(
                    "conflict", ("vlan",) if obj.vlan is not None else ("physnet",),
                    f"{seg} of physnet {obj.physnet!r} is network {n.name!r}'s: frames "
                    "from the uplink could not be told apart",
                )  # fmt: skip
    l3.network_change(state, obj)
    return obj


def _network_of(state: State, obj: Subnet | Port, old: Resource | None) -> Network:
    """The network a subnet or port belongs to: it exists, and its tenant is the object's."""
    net = state.get("network", obj.network)
    if net is None:
        raise ModelError("invalid", ("network",), f"no network {obj.network!r}")
    if obj.tenant and obj.tenant != net.tenant:
        raise ModelError("invalid", ("tenant",), f"a {obj.kind} belongs to its network's tenant")
    if old is not None and getattr(old, "network", None) != obj.network:
        raise ModelError("invalid", ("network",), f"a {obj.kind} cannot move to another network")
    return net  # type: ignore[no-any-return]


def _admit_subnet(state: State, obj: Resource, old: Resource | None) -> Resource:
    assert isinstance(obj, Subnet)
    net = _network_of(state, obj, old)
    obj = obj.changed(tenant=net.tenant)
    assert isinstance(obj, Subnet)
    unique_name(state, obj, net.tenant)
    if isinstance(old, Subnet) and old.cidr != obj.cidr:
        raise ModelError("invalid", ("cidr",), "the CIDR of a subnet cannot change")
    mine = obj.network_obj
    for s in state.subnets_of(net.id):
        if s.id != obj.id and s.ip_version == obj.ip_version and mine.overlaps(s.network_obj):
            raise ModelError(
                "conflict", ("cidr",), f"{obj.cidr} overlaps subnet {s.name!r} ({s.cidr})"
            )
    gw = obj.gateway
    for p in state.ports_of(net.id):
        if gw in p.ips:
            raise ModelError("conflict", ("gateway",), f"{gw} is port {p.name!r}'s address")
    l3.subnet_change(state, obj, net)
    return obj


def _admit_port(state: State, obj: Resource, old: Resource | None) -> Resource:
    assert isinstance(obj, Port)
    net = _network_of(state, obj, old)
    if obj.chassis is not None and state.get("chassis", obj.chassis) is None:
        raise ModelError("invalid", ("chassis",), f"no chassis {obj.chassis!r}")
    unique_name(state, obj, net.tenant)
    others = [p for p in state.ports_of(net.id) if p.id != obj.id]
    legs = l3.legs(state, net.id)  # routers' ports on this network
    macs = {p.mac: f"port {p.name!r}" for p in others if p.mac}
    macs.update((leg.mac, str(leg)) for leg in legs if leg.mac)
    mac = obj.mac
    if mac is None:
        salt = 0
        while (mac := derived_mac(obj.id, salt)) in macs:
            salt += 1
    elif mac in macs:
        raise ModelError("conflict", ("mac",), f"{mac} is {macs[mac]}'s in this network")
    keys = {p.tunnel_key: f"port {p.name!r}" for p in others if p.tunnel_key}
    keys.update((leg.tunnel_key, str(leg)) for leg in legs if leg.tunnel_key)
    key = obj.tunnel_key
    if key is None:
        key = next((k for k in range(1, MAX_PORT_KEY + 1) if k not in keys), None)
        if key is None:
            raise ModelError("conflict", ("tunnel_key",), f"network {net.name!r} is full")
    elif key in keys:
        raise ModelError(
            "conflict", ("tunnel_key",), f"{key} is {keys[key]}'s in network {net.name!r}"
        )
    assert mac is not None
    subnets = state.subnets_of(net.id)
    taken = {ip: f"port {p.name!r}" for p in others for ip in p.ips}
    taken.update(l3.held_addresses(state, net.id))
    fixed = list(obj.fixed_ips)
    if not fixed and old is None:  # on create: an address from every subnet of the network
        fixed = [FixedIP(subnet=s.id) for s in subnets]
    done: list[FixedIP] = []
    mine: set[str] = set()
    for i, fip in enumerate(fixed):
        sub = _subnet_for(subnets, fip, net, i)
        ip = fip.ip
        slaac = l3.eui64(sub.cidr, mac) if sub.ipv6_mode in l3.SLAAC else None
        if slaac is not None and ip is not None and ip != slaac:
            raise ModelError(
                "invalid",
                ("fixed_ips", i, "ip"),
                f"{ip} is not {slaac}, the EUI-64 address of the port's MAC {mac}: subnet "
                f"{sub.name!r} ({sub.ipv6_mode}) gives addresses by SLAAC",
            )
        if ip is None:
            ip = slaac or allocate(sub, taken.keys() | mine)
            if ip is None:
                raise ModelError(
                    "conflict", ("fixed_ips", i, "ip"), f"subnet {sub.name!r} has no free address"
                )
        if ip in taken:
            raise ModelError("conflict", ("fixed_ips", i, "ip"), f"{ip} is in use by {taken[ip]}")
        elif ip == sub.gateway:
            raise ModelError(
                "conflict", ("fixed_ips", i, "ip"), f"{ip} is subnet {sub.name!r}'s gateway"
            )
        elif not sub.usable(ip):
            raise ModelError(
                "invalid", ("fixed_ips", i, "ip"), f"{ip} is not a usable address of {sub.cidr}"
            )
        if ip in mine:
            raise ModelError("invalid", ("fixed_ips", i, "ip"), f"{ip} is given twice")
        mine.add(ip)
        done.append(FixedIP(subnet=sub.id, ip=ip))
    seen: set[str] = set()
    for i, gid in enumerate(obj.security_groups):
        g = state.get("security_group", gid)
        if g is None:
            raise ModelError("invalid", ("security_groups", i), f"no security group {gid!r}")
        if g.tenant != net.tenant:
            raise ModelError(
                "invalid",
                ("security_groups", i),
                f"security group {g.name!r} is tenant {state._tenant_name(g.tenant)!r}'s; "
                "a port's groups are its own tenant's",
            )
        if gid in seen:
            raise ModelError("invalid", ("security_groups", i), f"{g.name!r} is listed twice")
        seen.add(gid)
    out = obj.changed(
        tenant=net.tenant, mac=mac, tunnel_key=key, fixed_ips=[f.model_dump() for f in done]
    )
    assert isinstance(out, Port)
    l3.port_floating_ips(state, out, old if isinstance(old, Port) else None)
    return out


def _subnet_for(subnets: list[Subnet], fip: FixedIP, net: Network, i: int) -> Subnet:
    if fip.subnet is not None:
        sub = next((s for s in subnets if s.id == fip.subnet), None)
        if sub is None:
            raise ModelError(
                "invalid", ("fixed_ips", i, "subnet"), f"not a subnet of network {net.name!r}"
            )
        if fip.ip is not None and ipaddress.ip_address(fip.ip) not in sub.network_obj:
            raise ModelError(
                "invalid",
                ("fixed_ips", i, "ip"),
                f"{fip.ip} is outside subnet {sub.name!r} ({sub.cidr})",
            )
        return sub
    if fip.ip is None:
        raise ModelError("invalid", ("fixed_ips", i), "give a subnet, an ip, or both")
    addr = ipaddress.ip_address(fip.ip)
    sub = next((s for s in subnets if addr in s.network_obj), None)
    if sub is None:
        raise ModelError(
            "invalid",
            ("fixed_ips", i, "ip"),
            f"{fip.ip} is outside every subnet of network {net.name!r}",
        )
    return sub


def _rule_groups(state: State, obj: SecurityGroup | Policy) -> Resource:
    """`obj` with every group its rules name checked, a group naming itself given its id."""
    data = obj.model_dump(mode="json")
    for i, rule in enumerate(obj.rules):
        for side, peer in (("from", rule.from_), ("to", rule.to)):
            if peer is None or peer.group is None:
                continue
            loc = ("rules", i, side, "group")
            g = state.get("security_group", peer.group)
            if g is None and isinstance(obj, SecurityGroup) and peer.group in (obj.id, obj.name):
                data["rules"][i][side]["group"] = obj.id  # the group itself
            elif g is None:
                where = state._tenant_name(obj.tenant)
                raise ModelError(
                    "invalid", loc, f"no security group {peer.group!r} in tenant {where!r}"
                )
            elif g.tenant != obj.tenant:
                raise ModelError(
                    "invalid",
                    loc,
                    f"security group {g.name!r} is tenant {state._tenant_name(g.tenant)!r}'s; "
                    "rules name groups of their own tenant",
                )
    return type(obj).model_validate(data)


def _admit_security_group(state: State, obj: Resource, old: Resource | None) -> Resource:
    assert isinstance(obj, SecurityGroup)
    in_tenant(state, obj, old)
    return _rule_groups(state, obj)


def _admit_policy(state: State, obj: Resource, old: Resource | None) -> Resource:
    assert isinstance(obj, Policy)
    in_tenant(state, obj, old)
    for o in state.all("policy"):
        if o.id != obj.id and o.tenant == obj.tenant and o.priority == obj.priority:
            raise ModelError(
                "conflict",
                ("priority",),
                f"priority {obj.priority} is policy {o.name!r}'s; a tenant's priorities are unique",
            )
    return _rule_groups(state, obj)


_ADMIT = {
    "tenant": _admit_tenant,
    "chassis": _admit_chassis,
    "network": _admit_network,
    "subnet": _admit_subnet,
    "port": _admit_port,
    "security_group": _admit_security_group,
    "policy": _admit_policy,
    "router": l3.admit_router,
    "floating_ip": l3.admit_floating_ip,
    "neighbour": admit_neighbour,
    "bfd_status": admit_bfd_status,
    "chassis_status": admit_chassis_status,
}


def naming_rules(state: State, group_id: str) -> list[str]:
    """The rules (of groups and policies) whose remote is the group `group_id`, by name."""
    out = []
    for kind in ("security_group", "policy"):
        for o in state.all(kind):
            if o.id == group_id:
                continue  # a group's own rules go with it
            for i, r in enumerate(o.rules):
                if any(p is not None and p.group == group_id for p in (r.from_, r.to)):
                    out.append(f"{kind.replace('_', ' ')} {o.name!r} rule {i}")
    return out


# -- deletion ---------------------------------------------------------------------------
def plan_delete(state: State, kind: str, oid: str, cascade: bool = False) -> list[Change]:
    """The changes that delete an object; ModelError while something depends on it."""
    obj = state.get(kind, oid)
    if obj is None:
        raise ModelError("missing", (), f"no {kind} {oid!r}")
    out: list[Change] = []

    def refuse(what: str, names: list[str]) -> None:
        shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        raise ModelError(
            "conflict",
            (),
            f"{kind} {obj.name!r} still has {what}: {shown} (delete them first, or cascade)",
        )

    if isinstance(obj, Tenant):
        nets = [n for n in state.all("network") if n.tenant == oid]
        groups = [g for g in state.all("security_group") if g.tenant == oid]
        policies = [p for p in state.all("policy") if p.tenant == oid]
        routers = [r for r in state.all("router") if r.tenant == oid]
        fips = [f for f in state.all("floating_ip") if f.tenant == oid]
        for what, objs in (
            ("floating IPs", fips), ("routers", routers), ("networks", nets),
            ("security groups", groups), ("policies", policies),
        ):  # fmt: skip
            if objs and not cascade:
                refuse(what, [o.name for o in objs])
        out += [Change("delete", p) for p in policies]
        out += [Change("delete", o) for o in (*fips, *routers)]
        rest = state.apply(out)  # the tenant's routers go before its networks
        for n in nets:
            out += plan_delete(rest, "network", n.id, cascade=True)
        out += [Change("delete", g) for g in groups]
    elif isinstance(obj, Network):
        ports = state.ports_of(oid)
        if ports and not cascade:
            refuse("ports", [p.name for p in ports])
        out += [Change("delete", p) for p in ports]
        out += [Change("delete", s) for s in state.subnets_of(oid)]
    elif isinstance(obj, Subnet):
        users = [
            p for p in state.ports_of(obj.network) if any(f.subnet == oid for f in p.fixed_ips)
        ]
        if users and not cascade:
            refuse("ports with addresses in it", [p.name for p in users])
        for p in users:
            keep = [f.model_dump() for f in p.fixed_ips if f.subnet != oid]
            out.append(Change("put", p.changed(fixed_ips=keep)))
    elif isinstance(obj, Chassis):
        bound = [p for p in state.all("port") if p.chassis == oid]
        if bound and not cascade:
            refuse("bound ports", [p.name for p in bound])
        out += [Change("put", p.changed(chassis=None)) for p in bound]
        out += [Change("delete", r) for r in state.all("chassis_status") if r.id == oid]
        for rep in state.all("bfd_status"):  # its BFD report goes, and others' of it
            if rep.id == oid:
                out.append(Change("delete", rep))
            elif oid in rep.sessions:
                left = {k: v for k, v in rep.sessions.items() if k != oid}
                out.append(Change("put", rep.changed(sessions=left)))
    elif isinstance(obj, SecurityGroup):
        rules = naming_rules(state, oid)
        if rules:
            shown = ", ".join(rules[:5]) + (" ..." if len(rules) > 5 else "")
            raise ModelError(
                "conflict",
                (),
                f"security group {obj.name!r} is named by {shown} (change those rules first)",
            )
        members = [p for p in state.all("port") if oid in p.security_groups]
        if members and not cascade:
            refuse("ports that list it", [p.name for p in members])
        for p in members:
            keep = [g for g in p.security_groups if g != oid]
            out.append(Change("put", p.changed(security_groups=keep)))
    out.append(Change("delete", obj))
    _keeps_routing(state, kind, obj, out)
    gone = {c.obj.id for c in out if c.op == "delete" and c.obj.kind == "router"}
    out += [Change("delete", n) for n in state.all("neighbour") if n.router in gone]
    dead = {c.obj.id for c in out if c.op == "delete" and c.obj.kind == "port"}
    for rep in state.all("chassis_status") if dead else ():  # gone ports are not up
        if rep.id != oid and dead & set(rep.ports_up):
            up = [x for x in rep.ports_up if x not in dead]
            out.append(Change("put", rep.changed(ports_up=up)))
    return out


def _keeps_routing(state: State, kind: str, obj: Resource, out: list[Change]) -> None:
    """Refuse a deletion that would take what a router or floating IP refers to --
    cascading or not: they are changed first, on purpose."""
    if kind in ("security_group", "policy", "floating_ip"):
        return
    before = set(l3.dangling(state))
    broken = [x for x in l3.dangling(state.apply(out), state) if x not in before]
    if broken:
        shown = ", ".join(broken[:5]) + (" ..." if len(broken) > 5 else "")
        what = kind.replace("_", " ")
        raise ModelError(
            "conflict", (), f"{what} {obj.name!r} is in use by {shown} (change those first)"
        )

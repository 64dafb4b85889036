"""The distributed firewall: security groups and ordered policies as ACL stages.

`model.policy` says what the model intends; this module makes the switch
do it, as OVN's `ls_in_acl`/`ls_out_acl` do.  Each port's rules run on the
port's own chassis: the sender's egress rules in the ingress pipeline (on
the sender's chassis, after `ls_in_l2_lkup` has named the receiver), the
receiver's ingress rules in the egress pipeline (on the receiver's chassis:
`ls_out_zone`, filled by `localize`, lets only ports bound here in).

Membership without products.  Every tenant's groups and selectors become
atoms, each a bit (`Atoms`); a port's bits (and its tenant's number) are
one flow of `ls_in_acl_bits`, keyed by the port's key in `REG_LOG`, which
both pipelines resubmit to: `*_pre_acl` looks up the guarded port
(`REG_ACL_LOCAL`), `*_acl_peer` -- for a filtered port only -- the other end
(`REG_ACL_REMOTE`, before `ct`).  A rule is one flow per service it
matches (family, protocol, port prefix) testing one bit of each side: flows
grow with ports + rules, never with their product.

Across a router.  A routed frame enters the destination's network from the
router's port there, which is in no group: so the other end of a side whose
remote register holds a router's port is found by its address instead --
the policy follows the workload whatever its subnet, as NSX's and Calico's
do.  The remote lookup carries the side it is on (`REG_LOG` bits 16-23, the
key below); a router port's flow in `BITS` (one per port and side, from
`Atoms.ports`) moves that side's address -- the destination's for the
sender's egress rules, the source's for the receiver's ingress rules -- into
the other end's registers, which the lookup fills in anyway, tags `REG_LOG`
with the network's routing domain (`routed`: networks and the routers
between them, numbered by their smallest router key, so two domains of a
tenant with the same addresses stay apart) and looks again: each port of a
routed network has one flow per address it may send from (its own, then
its address pairs'), longest prefix first and its own address before a pair
of one length -- a port in no group too, so its address is never taken for
another's wider pair.  Those flows belong to the port's network (a chassis
gets them where it gets that network, and so every network routed to it)
but match no datapath key: the lookup runs in the other network's pipeline.
An address two ports hold alike (one pair on both) is one of theirs, as the
router's next-hop lookup takes one.  Out of a VXLAN or NVGRE tunnel on a
routed network the source address is looked up in the domain the same way.
Replies need nothing more: they pass on ct state in each port's own zone.
Cost: one flow per address of each port on a routed network of a tenant with
a firewall, two per router port.

Bits that stay put.  A group or selector that appears or goes must not
renumber the others: the reconciler replaces the ports' membership flows
one by one, and two ends read in different numberings would meet a default
deny.  So the compiler keeps each tenant's allocation from one compile to
the next (`Compiler.kept`, `allocate`), as OVN's northd keeps tunnel keys once given:
an atom that stays keeps its bit, a new one takes the lowest bit never used
(else the one freed longest ago), and a gone atom's members keep its bit set
(`Atoms.freed`) until a new atom takes it -- old rule flows testing it may
still be installed, and none of the new ones tests it.  The allocation lives
in the controller's memory, not in the store: a fresh compiler (a restart,
`vnet verify -f`) numbers the atoms in the model's order (groups by name,
then the selectors), which equals the live numbering only while no atom has
come or gone out of that order; a restart after such churn renumbers once,
with the window described.  A scratch compile that must agree with the live
one starts from it (`Compiler(kept=live.kept)`).  Two flag bits carry the defaults: `MEMBER` (in some group: ingress
is default-deny) and `EGRESS_RULED` (a group of it has egress rules: egress
is default-deny).  Only flows that send to the controller (reject, log) are
per port: their cookie must name the port as well as the rule (`Punt`).

Stateful, as OVN.  A filtered port's IP traffic goes through `ct` in the
port's zone (one per logical port per chassis, `REG_ZONE`).  `*_acl` passes
replies and related packets of a connection not marked blocked (`ct_mark`
bit 0) on ct state alone, drops replies of a blocked one, drops invalid
TCP, UDP and ICMP (another protocol a tracker does not follow -- vnet's
follows only these -- meets the rules packet by packet) and evaluates the
rules for the rest -- new connections and every packet of an established
one in its original direction: policies first (`*_acl`, descending
OpenFlow priority in the order policies and their rules are tried; `pass`
goes on to `*_acl_sg`), then the security groups' allow rules and the
default-deny flags (`*_acl_sg`).  Allowed: `*_stateful` commits a new (or
blocked) connection with the mark cleared, an established one goes on
uncommitted.  Denied (deny, reject, default deny): `*_acl_block` drops, and
an established connection is first committed blocked -- so a change that
denies a connection cuts it at its next original-direction packet, and its
replies drop from then on (reject also punts, so the sender gets its RST);
a blocked connection the rules allow again is committed unblocked.  A
change that keeps a connection allowed never sends its packets to a deny:
the reconciler adds before it deletes, and a tenant's rules have distinct
priorities, so while old and new flows coexist the highest match is an
allow of one or the other.  The controller removes the entries of what a
change denies (`controller/cut.py`).

Never filtered: non-IP frames (ARP), ICMPv6 neighbour discovery, router
solicitation/advertisement and MLD, DHCP and DHCPv6, and what the switch
answers itself -- the responder's answers never reach these stages, and a
reject's answer, which the controller sends with a packet-out through the
pipeline, carries `FLAG_ANSWER` in `reg5` (set it before `output:TABLE`);
a port in no group and no
policy has no ACL flow beyond the stages' pass-through.

Logging and reject: a reject rule's flow sends the packet to the controller
(`controller(reason=action)`) and drops it; a logged deny does the same
under the `LOG_METER` meter.  A logged allow may not meter its own packet
(a meter drops the whole packet), so it forks a copy with `ct(table=)` to
`*_acl_log`, where the copy goes to the controller under the meter.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model.objects import Network, Policy, Port, Router, SecurityGroup
from ..model.routing import Interface, interfaces
from ..model.rules import State
from ..model.secrules import GroupRule, PolicyRule, selects
from ..pipeline.actions import OFPP_CONTROLLER, Action, Ct, Output, RegMove, Resubmit, SetField
from ..pipeline.fields import lookup
from .logical import Feature, LFlow, To, _Emit, feature
from .stages import (
    BITS,
    FLAG_ANSWER,
    FLAG_FROM_TUNNEL,
    NEXT,
    OUTPUT,
    REG_ACL_LOCAL,
    REG_ACL_REMOTE,
    REG_FLAGS,
    REG_INPORT,
    REG_LOG,
    REG_OUTPORT,
    REG_TENANT,
    REG_ZONE,
    table,
)

__all__ = [
    "BLOCKED",
    "EGRESS_RULED",
    "LOG_METER",
    "MAX_ATOMS",
    "MEMBER",
    "Atoms",
    "Freed",
    "MeterSpec",
    "Punt",
    "RouterPort",
    "allocate",
    "atoms",
    "bits",
    "filtered",
    "global_flows",
    "port_flows",
    "punts",
    "routed",
    "tenant_flows",
    "words",
]


@dataclass(frozen=True)
class Punt:
    """What a controller-bound ACL flow means."""

    action: str  # "allow" | "deny" | "reject"
    rule: str  # human text, e.g. "policy web-db rule 2" / "group web rule 0"
    log: bool
    direction: str  # "ingress" | "egress" (whose rule: receiver's or sender's)
    port: str  # the logical port (name) whose rule it is


def punts(lflows: Iterable[LFlow]) -> dict[int, Punt]:
    """cookie -> Punt, for every flow that sends to the controller."""
    return {lf.flow.cookie: lf.punt for lf in lflows if isinstance(lf.punt, Punt)}


@dataclass(frozen=True)
class MeterSpec:
    """A meter the compiled flows use; the controller installs it (pkt/s, one drop band)."""

    name: str
    meter_id: int
    rate: int  # packets per second
    burst: int = 0


LOG_METER = MeterSpec("acl-log", 1, 100)

MEMBER, EGRESS_RULED = 0, 1  # the flag bits
BLOCKED = 0x1  # ct_mark bit 0: the connection was denied since it was committed
# ct_state bits (value, mask): tracked (0x20), new (0x01), established (0x02),
# related (0x04), reply (0x08), invalid (0x10)
_INVALID = (0x30, 0x30)  # tracked, invalid
_ESTABLISHED = (0x22, 0x23)  # tracked, established, not new
_REPLY = {"ct_state": (0x2A, 0x2B)}  # ... and in the reply direction
_RELATED = (0x24, 0x25)
MAX_ATOMS = 32 * len(REG_ACL_LOCAL)
ETH_IP, ETH_IP6 = 0x0800, 0x86DD
_ETH = {"IPv4": ETH_IP, "IPv6": ETH_IP6}
# ICMPv6 never filtered: MLD (130-132, 143), RS, RA, NS, NA (133-136)
_ND = (130, 131, 132, 133, 134, 135, 136, 143)
# what every tracker follows; another protocol the switch's tracker may not (vnet's
# follows these only): its packets, "invalid", meet the rules one by one
_TRACKED = ((ETH_IP, 6), (ETH_IP, 17), (ETH_IP, 1), (ETH_IP6, 6), (ETH_IP6, 17), (ETH_IP6, 58))
_DHCP = ((ETH_IP, 68, 67), (ETH_IP, 67, 68), (ETH_IP6, 546, 547), (ETH_IP6, 547, 546))
_SLOT = {
    n: lookup(n).index
    for n in (
        *REG_ACL_LOCAL,
        *REG_ACL_REMOTE,
        REG_LOG,
        REG_TENANT,
        REG_INPORT,
        REG_OUTPORT,
        "ct_mark",
        "ipv4_src",
        "ipv4_dst",
        "ipv6_src",
        "ipv6_dst",
    )
}
_ZONE = (lookup(REG_ZONE).index, 0, 16)
# REG_LOG in a lookup of `BITS`: the guarded port's key alone; the other end's key with
# the side it is on (bits 16-23: a router's port is looked past by the address of that
# side); or a lookup by address in a routing domain (bit 24, the domain in bits 0-23, the
# address in the other end's registers -- which the lookup fills in anyway)
_IS_SRC, _IS_DST = 1 << 16, 2 << 16
_BY_ADDRESS = 1 << 24
_KEY = 0xFF00FFFF  # a port's key, whichever end it is


@dataclass(frozen=True)
class _Side:
    """One side of the firewall: whose rules, in which stages, matching what."""

    direction: str  # the rules' direction: egress (the sender's) or ingress (the receiver's)
    pre: str
    peer: str
    ct: str
    acl: str
    sg: str
    stateful: str
    log: str
    block: str
    local: str  # the register naming the guarded port
    remote: str  # the register naming the other end
    ip4: str  # the other end's address field
    ip6: str
    done: str  # where a packet the firewall is done with goes
    mark: int  # REG_LOG's side bits in a lookup of the other end (`_IS_SRC`, `_IS_DST`)


EGRESS = _Side("egress", "ls_in_pre_acl", "ls_in_acl_peer", "ls_in_acl_ct", "ls_in_acl", "ls_in_acl_sg",
               "ls_in_stateful", "ls_in_acl_log", "ls_in_acl_block", REG_INPORT, REG_OUTPORT, "ipv4_dst",
               "ipv6_dst", OUTPUT, _IS_DST)  # fmt: skip
INGRESS = _Side("ingress", "ls_out_pre_acl", "ls_out_acl_peer", "ls_out_acl_ct", "ls_out_acl", "ls_out_acl_sg",
                "ls_out_stateful", "ls_out_acl_log", "ls_out_acl_block", REG_OUTPORT, REG_INPORT, "ipv4_src",
                "ipv6_src", "ls_out_port_sec", _IS_SRC)  # fmt: skip
SIDES = {"egress": EGRESS, "ingress": INGRESS}


Key = tuple[Any, ...]  # an atom: ("group", id) | ("sel", selector items)


def _sel(selector: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(selector.items()))


@dataclass(frozen=True)
class Freed:
    """A bit no atom holds any more: the atom it was, and (a group's) its selector then."""

    bit: int
    key: Key
    selector: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class RouterPort:
    """A router's port on a network of a routing domain: past it, the other end of a
    routed frame is looked up by its address."""

    router: str  # id
    router_name: str
    network: str  # id
    network_name: str
    segment_id: int  # the network's VNI: its datapath key
    key: int  # the port's key in the network
    family: int  # 4 | 6: what the router routes through it
    domain: int  # the routing domain's number


@dataclass(frozen=True)
class Atoms:
    """A tenant's groups, policies and the bit each group and selector has.

    Built once per compile per tenant; builders read it through the memo, so
    a port's flows are rebuilt when its membership or the tenant's atoms change.
    """

    tenant: str
    key: int  # the tenant's number in REG_TENANT: the rule flows are the tenant's by it
    groups: tuple[SecurityGroup, ...]  # by name
    policies: tuple[Policy, ...]  # in the order they are tried
    bit: Mapping[tuple[Any, ...], int] = field(default_factory=dict)  # ("group", id) | ("sel", s)
    applied: frozenset[int] = frozenset()  # the bits of policies' applied_to selectors
    # some chassis receives VXLAN or NVGRE, whose frames carry no logical input port:
    # the other end's memberships are found by its address too
    by_address: bool = False
    # bits no atom holds any more, freed longest ago first: their atoms' members keep them
    # set until a new atom takes one -- old rule flows testing it may still be installed
    freed: tuple[Freed, ...] = ()
    # the tenant's networks behind its routers, each with its routing domain's number:
    # a routed frame's other end is found by its address among the domain's ports
    routed: Mapping[str, int] = field(default_factory=dict)
    ports: tuple[RouterPort, ...] = ()  # the routers' ports on those networks

    # builders read these through the memo as plain values (a method read from a new
    # instance never compares equal, so the functions below take the atoms instead)


def words(a: Atoms) -> int:
    """Registers of each side a tenant's bits take."""
    return max(1, -(-(max(a.bit.values(), default=1) + 1) // 32))


def bits(a: Atoms, port: Port) -> int:
    """A port's memberships: flags, groups and selectors, as bits."""
    b = 0
    labels = port.labels
    mine = [g for g in a.groups if g.id in port.security_groups or selects(g.selector, labels)]
    if mine:
        b |= 1 << MEMBER
        if any(r.direction == "egress" for g in mine for r in g.rules):
            b |= 1 << EGRESS_RULED
    for g in mine:
        i = a.bit.get(("group", g.id))
        if i is not None:
            b |= 1 << i
    for key, i in a.bit.items():
        if key[0] == "sel" and selects(dict(key[1]), labels):
            b |= 1 << i
    for f in a.freed:
        if f.key[0] == "sel":
            b |= selects(dict(f.key[1]), labels) << f.bit
        elif f.key[1] in port.security_groups or (f.selector and selects(dict(f.selector), labels)):
            b |= 1 << f.bit
    return b


def filtered(a: Atoms, b: int) -> bool:
    """Whether a port with bits `b` has rules: it is in a group, or a policy applies to it."""
    return bool(b & (1 << MEMBER)) or any(b >> i & 1 for i in a.applied)


def _atom_keys(gs: Sequence[SecurityGroup], ps: Sequence[Policy]) -> tuple[list[Key], list[Key]]:
    """A tenant's atoms in a fixed order (the groups, then the selectors) and the
    policies' `applied_to` among them."""
    keys: dict[Key, None] = {}  # insertion-ordered and unique
    applied = []
    for g in gs:
        if g.rules:
            keys[("group", g.id)] = None
    for p in ps:
        keys[("sel", _sel(p.applied_to))] = None
        applied.append(("sel", _sel(p.applied_to)))
    rules: list[GroupRule] = [r for g in gs for r in g.rules]
    rules += [r for p in ps for r in p.rules]
    for r in rules:
        peer = r.remote
        if peer is not None and peer.group is not None:
            keys[("group", peer.group)] = None
        elif peer is not None and peer.selector is not None:
            keys[("sel", _sel(peer.selector))] = None
    return list(keys), applied


def allocate(
    keys: Sequence[Key], before: Mapping[Key, int] | None, freed: Sequence[Freed] = ()
) -> tuple[dict[Key, int], list[Freed]]:
    """Each atom's bit, keeping the bits of `before`: (atom -> bit, the freed bits not
    taken again, freed longest ago first).

    An atom that stays keeps its bit; an atom that goes frees its bit at the end of
    `freed`; a new one takes the lowest bit never used, else the bit freed longest
    ago -- a bit freed by this very change only when the tenant has no other, so the
    old and the new flows never read one bit as two atoms while the ones are replaced
    by the others.  An atom back before its bit was taken gets it again.  Without
    `before` the bits are numbered in the order of `keys`.
    """
    if before is None:
        return {k: i + 2 for i, k in enumerate(keys)}, []
    live = set(keys)
    bit = {k: b for k, b in before.items() if k in live}
    bit |= {f.key: f.bit for f in freed if f.key in live}  # back before its bit was taken
    gone = [Freed(b, k) for k, b in sorted(before.items(), key=lambda kb: kb[1]) if k not in live]
    old = [f for f in freed if f.key not in live]
    used = set(bit.values()) | {f.bit for f in old} | {f.bit for f in gone}
    fresh = (b for b in range(2, MAX_ATOMS) if b not in used)
    reuse = [*old, *gone]  # oldest first: this change's freed bits last
    for k in keys:
        if k not in bit:
            b = next(fresh, None)
            bit[k] = b if b is not None else reuse.pop(0).bit
    return bit, reuse


def routed(state: State) -> tuple[dict[str, int], list[RouterPort]]:
    """Every network behind an (admitted, up) router, with its routing domain's number,
    and the routers' ports on them.

    A routing domain is what routers join: networks and the routers between them,
    through routers behind routers.  Its number is the smallest key of its routers (as
    router keys, unique across tenants; it changes only when routers join or part
    domains), so two domains of one tenant with the same addresses are told apart."""
    legs: dict[str, list[Interface]] = {}  # router id -> its live interfaces
    nets_of: dict[str, set[str]] = {}
    routers_on: dict[str, set[str]] = {}
    by_id: dict[str, Router] = {}
    for r in state.all("router"):
        if r.tunnel_key is None or not r.admin_up:
            continue
        live = [i for i in interfaces(state, r) if i.mac and i.tunnel_key]
        if not live:
            continue
        by_id[r.id], legs[r.id] = r, live
        for i in live:
            nets_of.setdefault(r.id, set()).add(i.network)
            routers_on.setdefault(i.network, set()).add(r.id)
    domain: dict[str, int] = {}  # network id -> its domain
    seen: set[str] = set()
    for start in sorted(by_id):
        if start in seen:
            continue
        group, todo = {start}, [start]
        while todo:
            for n in nets_of[todo.pop()]:
                for other in routers_on[n] - group:
                    group.add(other)
                    todo.append(other)
        seen |= group
        number = min(by_id[r].tunnel_key or 0 for r in group)
        for r in group:
            for n in nets_of[r]:
                domain[n] = number
    ports = []
    for rid, live in sorted(legs.items()):
        r = by_id[rid]
        for i in live:
            net = state.get("network", i.network)
            if net is None:
                continue
            ports.append(RouterPort(r.id, r.name, net.id, net.name, net.segment_id or 0,
                                    i.tunnel_key or 0, i.family, domain[net.id]))  # fmt: skip
    return domain, ports


def atoms(state: State, before: Mapping[str, Atoms] | None = None) -> dict[str, Atoms]:
    """Tenant id -> its atoms; with `before` (the previous compile's), every atom that
    stays keeps its bit (`allocate`).  ValueError naming the tenant if they do not fit
    the registers."""
    groups: dict[str, list[SecurityGroup]] = {}
    policies: dict[str, list[Policy]] = {}
    for g in state.all("security_group"):
        groups.setdefault(g.tenant, []).append(g)
    for p in state.all("policy"):
        policies.setdefault(p.tenant, []).append(p)
    by_address = any(c.encap != "geneve" and c.underlay for c in state.all("chassis"))
    domain, legs = routed(state)
    nets = {n.id: n.tenant for n in state.all("network")}
    out = {}
    keys_used: set[int] = set()
    for t in sorted(set(groups) | set(policies)):
        gs = tuple(sorted(groups.get(t, ()), key=lambda g: (g.name, g.id)))
        ps = tuple(sorted(policies.get(t, ()), key=lambda p: (p.priority, p.name)))
        keys, applied = _atom_keys(gs, ps)
        if len(keys) + 2 > MAX_ATOMS:
            name = state.get("tenant", t)
            raise ValueError(
                f"tenant {name.name if name else t}: {len(keys)} groups and selectors in rules, "
                f"more than the {MAX_ATOMS - 2} the firewall's registers hold"
            )
        prev = before.get(t) if before is not None else None
        if prev is None and before is not None:
            prev = Atoms(t, 0, (), ())  # a tenant new since the last compile
        bit, freed = allocate(keys, prev.bit if prev else None, prev.freed if prev else ())
        if prev is not None:  # a group freed now: who its members were, by its selector then
            was = {g.id: g.selector for g in prev.groups}
            freed = [Freed(f.bit, f.key, _sel(was[f.key[1]] or {}) if f.key[1] in was else None)
                     if f.key[0] == "group" and f.selector is None else f for f in freed]  # fmt: skip
        # a tenant keeps its number while others come and go (unless a newcomer's hash
        # collides with it first): its rule flows do not change with other tenants
        tk = zlib.crc32(t.encode()) or 1
        while tk in keys_used:
            tk = tk % 0xFFFFFFFF + 1
        keys_used.add(tk)
        out[t] = Atoms(
            t, tk, gs, ps, bit, frozenset(bit[k] for k in applied), by_address, tuple(freed),
            {n: d for n, d in domain.items() if nets.get(n) == t},
            tuple(p for p in legs if nets.get(p.network) == t),
        )  # fmt: skip
    return out


# -- matching ------------------------------------------------------------------------------------
def _on(regs: Sequence[str], bits: Iterable[int]) -> dict[str, tuple[int, int]]:
    """A match that the bits are set in the registers `regs` hold."""
    out: dict[str, tuple[int, int]] = {}
    for i in bits:
        r = regs[i // 32]
        v, _ = out.get(r, (0, 0))
        v |= 1 << (i % 32)
        out[r] = (v, v)
    return out


def _load(regs: Sequence[str], bits: int, words: int) -> list[Action]:
    return [SetField(_SLOT[regs[w]], bits >> (32 * w) & 0xFFFFFFFF) for w in range(words)]


def _lookup(key: str, local: bool = False, mark: int = 0) -> list[Action | To]:
    """The memberships of the port named in register `key`, looked up in `BITS` (into the
    other end's registers; the guarded port's are moved on to theirs).  The other end's
    key goes with `mark`, the side it is on: a router's port there is looked past by
    that side's address."""
    if local:
        acts: list[Action | To] = [RegMove(_SLOT[key], 0, _SLOT[REG_LOG], 0, 32), Resubmit(table=table(BITS))]  # fmt: skip
        return acts + [RegMove(_SLOT[r], 0, _SLOT[g], 0, 32) for r, g in zip(REG_ACL_REMOTE, REG_ACL_LOCAL, strict=True)]  # fmt: skip
    return [SetField(_SLOT[REG_LOG], mark), RegMove(_SLOT[key], 0, _SLOT[REG_LOG], 0, 16),
            Resubmit(table=table(BITS))]  # fmt: skip


def _prefixes(lo: int, hi: int, width: int = 16) -> list[tuple[int, int]]:
    """The range lo..hi as (value, mask) prefixes."""
    out, full = [], (1 << width) - 1
    while lo <= hi:
        size = lo & -lo if lo else 1 << width
        while size > hi - lo + 1:
            size >>= 1
        out.append((lo, full & ~(size - 1)))
        lo += size
    return out


def _services(
    r: GroupRule, side: _Side, bit: Mapping[tuple[Any, ...], int]
) -> list[dict[str, Any]]:
    """What a rule matches, as matches (without the guarded port's side)."""
    peer, remote = r.remote, []
    if peer is not None and peer.group is not None:
        remote = [bit[("group", peer.group)]]
    elif peer is not None and peer.selector is not None:
        remote = [bit[("sel", _sel(peer.selector))]]
    out = []
    for fam in r.ethertypes:
        m: dict[str, Any] = {"eth_type": _ETH[fam], **_on(REG_ACL_REMOTE, remote)}
        if peer is not None and peer.cidr is not None:
            net = ipaddress.ip_network(peer.cidr)
            m[side.ip4 if fam == "IPv4" else side.ip6] = (int(net.network_address), int(net.netmask))  # fmt: skip
        p = r.protocol_number
        if p is not None:
            m["ip_proto"] = p
        rng = r.port_range
        if rng is not None:
            out += [{**m, "tp_dst": vm} for vm in _prefixes(*rng)]
            continue
        if r.icmp_type is not None:
            v6 = fam == "IPv6"
            m["icmpv6_type" if v6 else "icmp_type"] = r.icmp_type
            if r.icmp_code is not None:
                m["icmpv6_code" if v6 else "icmp_code"] = r.icmp_code
        out.append(m)
    return out


def _ref(kind: str, name: str, index: int) -> str:
    return f"{kind} {name} rule {index}"


def _describe(r: GroupRule) -> str:
    what = [r.protocol if isinstance(r.protocol, str) else f"proto {r.protocol}"]
    if r.ports is not None:
        what.append(r.ports)
    if r.icmp_type is not None:
        what.append(f"type {r.icmp_type}" + (f"/{r.icmp_code}" if r.icmp_code is not None else ""))
    peer = r.remote
    if peer is not None:
        where = "from" if r.direction == "ingress" else "to"
        what.append(f"{where} " + (peer.cidr or (f"group {peer.group}" if peer.group else
                                   "selector " + ",".join(f"{k}={v}" for k, v in sorted((peer.selector or {}).items())))))  # fmt: skip
    return " ".join(what)


# policy rules take priorities down from here, in the order they are tried
_TOP = 60000
_MAX_POLICY_RULES = 50000


def _ordered(a: Atoms) -> Iterator[tuple[int, Policy, int, PolicyRule]]:
    """(OpenFlow priority, policy, index, rule) for every policy rule, in the order tried."""
    n = 0
    for p in a.policies:
        for i, r in enumerate(p.rules):
            if n >= _MAX_POLICY_RULES:
                raise ValueError(f"tenant {a.tenant}: more than {_MAX_POLICY_RULES} policy rules")
            yield _TOP - n, p, i, r
            n += 1


def _punting(r: PolicyRule) -> bool:
    return r.action == "reject" or r.log


# -- the flows ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Pipeline:
    name: str = "firewall"
    id: str = "firewall"


def _ct(to: str) -> Ct:
    """Through conntrack in the guarded port's zone, then on at stage `to`."""
    return Ct(zone_field=_ZONE, table=table(to))


def global_flows() -> list[LFlow]:
    """The stages' flows every datapath shares: what is never filtered, ct state, defaults."""
    e = _Emit("stage", _Pipeline(), None)
    ft = (FLAG_FROM_TUNNEL, FLAG_FROM_TUNNEL)
    e(EGRESS.pre, 200, "out of a tunnel: checked on the sender's chassis", {REG_FLAGS: ft}, goto=OUTPUT)  # fmt: skip
    # the whole mark cleared, not bit 0 alone: the firewall owns ct_mark today, and a
    # masked write inside ct() does not survive the OpenFlow 1.3 codec's round trip
    commit = Ct(commit=True, zone_field=_ZONE, exec_=(SetField(_SLOT["ct_mark"], 0),))
    block = Ct(commit=True, zone_field=_ZONE, exec_=(SetField(_SLOT["ct_mark"], BLOCKED),))
    answer = (FLAG_ANSWER, FLAG_ANSWER)
    # the tenant is left as it is: the guarded port's, when the other end is such a port
    zero = _load(REG_ACL_REMOTE, 0, len(REG_ACL_REMOTE))
    e(BITS, 1, "a port in no group and no selector", {}, apply=zero)
    for s in (EGRESS, INGRESS):
        e(s.pre, 200, "the switch's own answer (reject): never filtered", {REG_FLAGS: answer}, goto=s.done)  # fmt: skip
        for t in _ND:
            e(s.pre, 150, "neighbour discovery and MLD: never filtered",
              {"eth_type": ETH_IP6, "ip_proto": 58, "icmpv6_type": t}, goto=s.done)  # fmt: skip
        for eth, sp, dp in _DHCP:
            e(s.pre, 150, "DHCP: never filtered", {"eth_type": eth, "ip_proto": 17, "tp_src": sp, "tp_dst": dp}, goto=s.done)  # fmt: skip
        e(s.pre, 100, "the guarded port's memberships", {}, apply=_lookup(s.local, local=True), goto=NEXT)  # fmt: skip
        e(s.peer, 100, "a member of a group: the other end's memberships",
          _on(REG_ACL_LOCAL, [MEMBER]), apply=_lookup(s.remote, mark=s.mark), goto=NEXT)  # fmt: skip
        for eth in (ETH_IP, ETH_IP6):
            e(s.ct, 100, "conntrack in the guarded port's zone", {"eth_type": eth}, apply=[_ct(s.acl)])  # fmt: skip
        for eth, proto in _TRACKED:
            e(s.acl, 65000, "invalid: drop", {"ct_state": _INVALID, "eth_type": eth, "ip_proto": proto})  # fmt: skip
        # replies pass on ct state alone, unless a change denied the connection since;
        # the original direction meets the rules on every packet (as OVN's ACLs do)
        e(s.acl, 64000, "reply, not blocked: pass", {**_REPLY, "ct_mark": (0, BLOCKED)}, goto=s.done)  # fmt: skip
        e(s.acl, 64000, "reply of a blocked connection: drop", {**_REPLY, "ct_mark": (BLOCKED, BLOCKED)})  # fmt: skip
        e(s.acl, 64000, "related, not blocked: pass", {"ct_state": _RELATED, "ct_mark": (0, BLOCKED)}, goto=s.done)  # fmt: skip
        flag = EGRESS_RULED if s is EGRESS else MEMBER
        why = ("no egress rule of the port's groups allows it" if s is EGRESS
               else "no ingress rule of the port's groups allows it")  # fmt: skip
        e(s.sg, 1000, f"default deny: {why}", _on(REG_ACL_LOCAL, [flag]), goto=s.block)
        for eth in (ETH_IP, ETH_IP6):
            est = {"eth_type": eth, "ct_state": _ESTABLISHED, "ct_mark": (0, BLOCKED)}
            e(s.stateful, 110, "established, still allowed: on, nothing to commit", est, goto=NEXT)  # fmt: skip
            e(s.stateful, 100, "commit the allowed connection (unblocked)", {"eth_type": eth}, apply=[commit], goto=NEXT)  # fmt: skip
            e(s.block, 100, "denied since it was committed: mark the connection blocked, drop",
              est, apply=[block])  # fmt: skip
    return e.out


def tenant_flows(a: Atoms) -> list[LFlow]:
    """A tenant's rule flows, one per rule and service, scoped by the tenant's number
    (`REG_TENANT`, loaded with the guarded port's memberships): one copy for all its
    networks."""
    out: list[LFlow] = []
    mine = {REG_TENANT: a.key}
    e = _Emit("stage", _Pipeline(), None)
    for i in sorted(a.applied):
        for s in (EGRESS, INGRESS):
            e(s.peer, 100, "a policy applies: the other end's memberships",
              {**mine, **_on(REG_ACL_LOCAL, [i])}, apply=_lookup(s.remote, mark=s.mark), goto=NEXT)  # fmt: skip
    out += e.out
    out += _router_ports(a)
    for prio, pol, i, r in _ordered(a):
        if _punting(r):
            continue  # per port: its cookie names the port
        s = SIDES[r.direction]
        e = _Emit("policy", pol, None)
        local = {**mine, **_on(REG_ACL_LOCAL, [a.bit[("sel", _sel(pol.applied_to))]])}
        text = f"{r.action} by {_ref('policy', pol.name, i)}: {_describe(r)}"
        goto = {"allow": s.stateful, "pass": NEXT, "deny": s.block, "reject": s.block}[r.action]
        for m in _services(r, s, a.bit):
            e(s.acl, prio, text, {**local, **m}, goto=goto)
        out += e.out
    for g in a.groups:
        e = _Emit("security_group", g, None)
        for i, gr in enumerate(g.rules):
            s = SIDES[gr.direction]
            local = {**mine, **_on(REG_ACL_LOCAL, [a.bit[("group", g.id)]])}
            text = f"allow by {_ref('group', g.name, i)}: {_describe(gr)}"
            for m in _services(gr, s, a.bit):
                e(s.sg, 2000, text, {**local, **m}, goto=NEXT)
        out += e.out
    return out


@dataclass(frozen=True)
class _Named:
    id: str
    name: str
    segment_id: int | None = None  # a network's: its datapath key


def _address(field: str, v6: bool) -> list[Action]:
    """The packet's address `field` into the other end's registers, low word first."""
    words = 4 if v6 else 1
    return [RegMove(_SLOT[field], 32 * w, _SLOT[REG_ACL_REMOTE[w]], 0, 32) for w in range(words)]  # fmt: skip


def _router_ports(a: Atoms) -> list[LFlow]:
    """Past each router port of the tenant's routed networks: the other end of a routed
    frame by its address (the source's as the receiver's other end, the destination's
    as the sender's), among the ports of the network's routing domain."""
    out: list[LFlow] = []
    fallback: dict[str, RouterPort] = {}
    for rp in a.ports:
        net = _Named(rp.network, rp.network_name, rp.segment_id)
        e = _Emit("router", _Named(rp.router, rp.router_name), net)
        v6 = rp.family == 6
        for s in (EGRESS, INGRESS):
            end = "destination" if s is EGRESS else "source"
            m = {REG_LOG: s.mark | rp.key, "eth_type": ETH_IP6 if v6 else ETH_IP}
            e(BITS, 100, f"its port {rp.key} on {rp.network_name}: the other end of a routed "
              f"frame by its {end} address (domain {rp.domain})", m,
              apply=[SetField(_SLOT[REG_LOG], _BY_ADDRESS | rp.domain),
                     *_address(s.ip6 if v6 else s.ip4, v6), To(BITS)])  # fmt: skip
        out += e.out
        fallback.setdefault(rp.network, rp)
    if a.by_address:
        # out of a VXLAN or NVGRE tunnel, no logical input port: by the source address,
        # which may be a port's behind the router as well as one of this network's
        for rp in fallback.values():
            net = _Named(rp.network, rp.network_name, rp.segment_id)
            e = _Emit("network", net, net)
            for v6 in (False, True):
                e(BITS, 80, f"out of a tunnel on routed network {rp.network_name}: the other "
                  f"end by its IPv{6 if v6 else 4} source address (domain {rp.domain})",
                  {REG_LOG: _IS_SRC, "eth_type": ETH_IP6 if v6 else ETH_IP},
                  apply=[SetField(_SLOT[REG_LOG], _BY_ADDRESS | rp.domain),
                         *_address("ipv6_src" if v6 else "ipv4_src", v6), To(BITS)])  # fmt: skip
            out += e.out
    return out


def _held(port: Port) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, bool]]:
    """(prefix, the port's own address) for each address the port may send from: its
    own, then its address pairs'."""
    out = [(ipaddress.ip_network(ip), True) for ip in port.ips]
    return out + [(ipaddress.ip_network(p.ip), False) for p in port.allowed_address_pairs]


def _by_address(net: Network, port: Port, a: Atoms, b: int, domain: int) -> list[LFlow]:
    """A routed port's memberships by each address it may send from, for either end
    (the address is in the other end's registers: `_address`).

    Kept on the chassis that get the port's network (those routed to it too), but
    matching no datapath key: the lookup runs in the other network's pipeline, for the
    port's routing domain.  Longest prefix first, and of one length the port's own
    address before an address pair; a port in no group has its flows too, so an
    address of its own is never taken for a wider pair of another's."""
    e = _Emit("port", port, net)
    e.key = None  # the network's flows, in every network's pipeline
    load = [SetField(_SLOT[REG_TENANT], a.key), *_load(REG_ACL_REMOTE, b, len(REG_ACL_REMOTE))]
    for prefix, own in _held(port):
        v6 = prefix.version == 6
        addr, mask = int(prefix.network_address), int(prefix.netmask)
        m: dict[str, Any] = {REG_LOG: _BY_ADDRESS | domain, "eth_type": ETH_IP6 if v6 else ETH_IP}
        for w in range(4 if v6 else 1):
            wm = mask >> (32 * w) & 0xFFFFFFFF
            if wm:
                m[REG_ACL_REMOTE[w]] = (addr >> (32 * w) & wm, wm)
        e(BITS, 100 + 2 * prefix.prefixlen + own,
          f"its memberships, by its address {prefix} (routed: the other end)", m, apply=load)  # fmt: skip
    return e.out


def port_flows(net: Network, port: Port, a: Atoms) -> list[LFlow]:
    """A port's membership in registers (both sides), and its reject and logged rules."""
    e = _Emit("port", port, net)
    key = port.tunnel_key or 0
    b = bits(a, port)
    load = [SetField(_SLOT[REG_TENANT], a.key), *_load(REG_ACL_REMOTE, b, len(REG_ACL_REMOTE))]
    if b:
        # one flow for both pipelines and both ends: looked up by the port's key
        e(BITS, 100, "its memberships", {REG_LOG: (key, _KEY)}, apply=load)
    domain = a.routed.get(net.id)
    if b and a.by_address and domain is None:
        # frames out of a VXLAN or NVGRE tunnel carry no logical input port: by its address
        # (on a routed network, by the domain's lookup)
        for ip in port.ips:
            v6 = ipaddress.ip_address(ip).version == 6
            m = {REG_LOG: _IS_SRC, "eth_type": ETH_IP6 if v6 else ETH_IP,
                 "ipv6_src" if v6 else "ipv4_src": int(ipaddress.ip_address(ip))}  # fmt: skip
            e(BITS, 90, "its memberships, by its address (the other end, out of a tunnel)", m, apply=load)  # fmt: skip
    past = [] if domain is None else _by_address(net, port, a, b, domain)
    if not filtered(a, b):
        return e.out + past
    for prio, pol, i, r in _ordered(a):
        if not _punting(r) or not selects(pol.applied_to, port.labels):
            continue
        s = SIDES[r.direction]
        ref = _ref("policy", pol.name, i)
        punt = Punt(r.action if r.action != "pass" else "allow", ref, r.log, s.direction, port.name)
        text = f"{r.action} by {ref}: {_describe(r)}"
        acts: list[Action | To] = []
        goto: str | None = s.block
        if r.action == "reject":
            acts = [Output(OFPP_CONTROLLER)]
        else:
            # logged: a copy to the log stage, where the meter may drop it; the packet goes
            # on (allowed, passed, or denied -- a meter must not keep a deny from blocking)
            tag = zlib.crc32(f"{pol.id}/{i}".encode())
            acts = [SetField(_SLOT[REG_LOG], tag), _ct(s.log)]  # IP: the rule matches eth_type  # fmt: skip
            goto = {"allow": s.stateful, "pass": NEXT}.get(r.action, s.block)
            e(s.log, 100, f"log: {text}", {s.local: key, REG_LOG: tag},
              apply=[Output(OFPP_CONTROLLER)], meter=LOG_METER.meter_id, punt=punt)  # fmt: skip
        for m in _services(r, s, a.bit):
            m = {**m, s.local: key}
            e(s.acl, prio, text, m, apply=acts, goto=goto,
              punt=punt if r.action == "reject" else None)  # fmt: skip
    return e.out + past


FIREWALL = feature(Feature("acl", atoms, global_flows, tenant_flows, port_flows))

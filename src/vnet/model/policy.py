"""What the security model intends, from the model alone: membership, classes, verdicts.

This is the reference the enforcement is judged by: `vnet verify` compares
`intended` with what the compiled flows do, and `apply --dry-run` reports
what a change opens and closes (`delta`).  It is pure -- a snapshot `State`
in, answers out -- and knows nothing of flows, registers or conntrack.

Semantics (`Evaluator.intended(src, dst, service)`, for the first packet of
a connection; replies to an allowed one always pass):

- Ports of different tenants never reach each other; ports of different
  networks have no path (there is no router yet); a port or network that is
  down forwards nothing.
- ICMPv6 neighbour discovery, router solicitations and advertisements and
  MLD are never filtered.  (ARP and the switch's own answers -- DHCP, the
  ARP/ND responder -- are not port-to-port traffic and are never filtered
  either.)
- Both the sender's egress and the receiver's ingress decide, in that order;
  the first side that does not allow ends it.  On each side:
  1. The policies whose `applied_to` selects the port, by priority (lower
     first), each one's rules in order, rules of that direction only: the
     first rule that matches decides -- allow, deny and reject end the side,
     `pass` hands it to the security groups.
  2. The security groups the port is a member of (listed by the port, or
     selected by label): a port in no group allows; on ingress a member
     allows only what one of its groups' ingress rules allows; on egress it
     allows everything unless one of its groups has egress rules, and then
     only what they allow.  The allowing rule reported is the first in group
     name order.
- A rule matches a service by family (`GroupRule.ethertypes`), protocol,
  destination port range, ICMP type and code, and its remote: a CIDR holds
  the other port's address of the service's family (its first fixed IP, or
  the one given), a group has the other port as a member, a selector picks
  its labels.  Groups and selectors match ports -- the port a packet came
  from or goes to -- so they need no addresses.

Classes keep the work proportional to what policy can tell apart, not to
pairs of ports or to all services.  Two ports of one `PortClass` share
tenant, network, admin state, groups, the answer of every selector the
tenant's policies and rules use, and for each family whether they have an
address and which of the rules' CIDRs hold it: every verdict to or from one
is the verdict of the other.  Two services of one `ServiceClass` are told
apart by no rule of the tenant (e.g. `tcp/80`, `tcp/other`, `icmp/8`,
`icmpv6/nd`, `other`).  `matrix` gives a verdict per pair of classes and
service class (of a family both ports have an address of: what can be
tried); `delta` the same for two snapshots at once, over classes of
both, so nothing a change opens or closes falls between representatives.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .objects import Network, Policy, Port, SecurityGroup
from .rules import State
from .secrules import ETHERTYPES, PROTOCOLS, GroupRule, Peer, selects

__all__ = [
    "NEVER_FILTERED_ICMPV6",
    "Cell",
    "Evaluator",
    "PortClass",
    "Reach",
    "RuleRef",
    "Service",
    "ServiceClass",
    "ServiceClasses",
    "Step",
    "Verdict",
    "address",
    "delta",
    "intended",
    "matrix",
]

TCP, UDP, ICMP, ICMPV6 = PROTOCOLS["tcp"], PROTOCOLS["udp"], PROTOCOLS["icmp"], PROTOCOLS["icmpv6"]
_NAMES = {n: name for name, n in PROTOCOLS.items()}
# MLD (130-132, 143), router solicitation and advertisement (133, 134), NS and NA (135, 136)
NEVER_FILTERED_ICMPV6 = frozenset({130, 131, 132, 133, 134, 135, 136, 143})
_ICMP_OF = {"IPv4": ICMP, "IPv6": ICMPV6}
_ECHO = {"IPv4": 8, "IPv6": 128}
_SERVICE = re.compile(r"(?:(ipv4|ipv6)\s+)?([a-z0-9]+)(?:/(\d+))?(?:/(\d+))?", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class Service:
    """What a connection's first packet asks for: family, protocol, and port or ICMP type/code."""

    ethertype: str
    protocol: int
    port: int | None = None  # TCP and UDP: the destination port
    icmp_type: int | None = None  # ICMP of the family: type and code
    icmp_code: int | None = None

    def __post_init__(self) -> None:
        if self.ethertype not in ETHERTYPES:
            raise ValueError(f"ethertype {self.ethertype!r}: IPv4 or IPv6")
        if not 0 <= self.protocol <= 255:
            raise ValueError(f"protocol {self.protocol}: 0-255")
        if self.protocol in (TCP, UDP):
            if self.port is None or not 1 <= self.port <= 65535:
                raise ValueError(f"{_NAMES[self.protocol]} needs a port 1-65535, not {self.port}")
        elif self.port is not None:
            raise ValueError("only tcp and udp have ports")
        if self.protocol == _ICMP_OF[self.ethertype]:
            if self.icmp_type is None or not 0 <= self.icmp_type <= 255:
                raise ValueError(f"ICMP needs a type 0-255, not {self.icmp_type}")
            if self.icmp_code is None:
                object.__setattr__(self, "icmp_code", 0)
            elif not 0 <= self.icmp_code <= 255:
                raise ValueError(f"ICMP code {self.icmp_code}: 0-255")
        elif self.icmp_type is not None or self.icmp_code is not None:
            raise ValueError(f"ICMP type and code need {_NAMES[_ICMP_OF[self.ethertype]]}")

    @staticmethod
    def parse(text: str, ethertype: str | None = None) -> Service:
        """`tcp/80`, `udp/53`, `icmp/8[/0]`, `icmpv6/128`, `proto/47`, optionally `ipv6 ...`."""
        m = _SERVICE.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"{text!r}: e.g. tcp/80, icmp/8/0, icmpv6/128, proto/47")
        fam, name, a, b = m[1], m[2].lower(), m[3], m[4]
        family = {"ipv4": "IPv4", "ipv6": "IPv6"}[fam.lower()] if fam else ethertype
        if name == "icmpv6" and family is None:
            family = "IPv6"
        family = family or "IPv4"
        if name == "proto" and a is not None and b is None:
            return Service(family, int(a))
        if name not in PROTOCOLS:
            raise ValueError(f"{text!r}: tcp, udp, icmp, icmpv6 or proto/NUMBER")
        proto = PROTOCOLS[name]
        if proto in (TCP, UDP):
            if a is None or b is not None:
                raise ValueError(f"{text!r}: {name}/PORT")
            return Service(family, proto, port=int(a))
        t = int(a) if a is not None else _ECHO[family]
        return Service(family, proto, icmp_type=t, icmp_code=int(b) if b is not None else 0)

    def __str__(self) -> str:
        name = _NAMES.get(self.protocol)
        if self.port is not None:
            return f"{name}/{self.port}"
        if self.icmp_type is not None:
            return f"{name}/{self.icmp_type}/{self.icmp_code}"
        return f"proto/{self.protocol}"

    @property
    def never_filtered(self) -> bool:
        return (
            self.ethertype == "IPv6"
            and self.protocol == ICMPV6
            and self.icmp_type in NEVER_FILTERED_ICMPV6
        )


@dataclass(frozen=True)
class RuleRef:
    """One rule of a policy or a security group, by position."""

    kind: str  # policy | security_group
    name: str
    id: str
    index: int

    def __str__(self) -> str:
        return f"{self.kind.replace('_', ' ')} {self.name} rule {self.index}"


@dataclass(frozen=True)
class Step:
    """One side's decision: the sender's egress or the receiver's ingress."""

    direction: str  # egress | ingress
    port: str  # the port whose side it is, by name
    action: str  # allow | deny | reject
    by: str  # policy | security_group | default
    rule: RuleRef | None = None  # the rule that decided; None for a default
    passed: RuleRef | None = None  # the policy rule that handed the decision to the groups
    log: bool = False
    reason: str = ""

    def __str__(self) -> str:
        why = str(self.rule) if self.rule is not None else self.reason
        via = f" (passed by {self.passed})" if self.passed is not None else ""
        return f"{self.direction} of {self.port}: {self.action} by {why}{via}"


@dataclass(frozen=True)
class Verdict:
    """What the model intends for a connection, and what decided it."""

    action: str  # allow | deny | reject
    by: str  # isolation | topology | exempt | policy | security_group | default
    reason: str
    steps: tuple[Step, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.action == "allow"

    @property
    def step(self) -> Step | None:
        """The side that decided: the one that refused, else the one with a rule, else the last."""
        if not self.steps:
            return None
        if not self.allowed:
            return self.steps[-1]
        return next((s for s in reversed(self.steps) if s.rule is not None), self.steps[-1])

    @property
    def rule(self) -> RuleRef | None:
        s = self.step
        return s.rule if s is not None else None

    @property
    def log(self) -> bool:
        return any(s.log for s in self.steps)

    def __str__(self) -> str:
        return f"{self.action}: {self.reason}"


def address(port: Port, ethertype: str) -> str | None:
    """A port's address of a family, as rules' CIDRs see it: its first fixed IP of that family."""
    want = 4 if ethertype == "IPv4" else 6
    return next((ip for ip in port.ips if ipaddress.ip_address(ip).version == want), None)


# -- service classes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServiceClass:
    """Services no rule tells apart, with one of them to try."""

    ethertype: str
    name: str  # tcp/80, tcp/8000-8080, tcp/other, icmp/8, icmpv6/nd, proto/47, other
    example: Service
    key: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.name} ({self.ethertype})"


def _span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


class ServiceClasses:
    """The partition of services that a set of rules induces, per family."""

    def __init__(self, rules: Iterable[GroupRule]) -> None:
        self.protos: dict[str, set[int]] = {f: set() for f in ETHERTYPES}
        self.ranges: dict[tuple[str, int], set[tuple[int, int]]] = {}
        self.icmp: dict[str, set[tuple[int, int | None]]] = {f: set() for f in ETHERTYPES}
        for r in rules:
            p = r.protocol_number
            for fam in r.ethertypes:
                if p is None:
                    continue
                self.protos[fam].add(p)
                if r.port_range is not None:
                    self.ranges.setdefault((fam, p), set()).add(r.port_range)
                if r.icmp_type is not None:
                    self.icmp[fam].add((r.icmp_type, r.icmp_code))
        self._by_family: dict[str, dict[tuple[Any, ...], ServiceClass]] = {}

    def key(self, s: Service) -> tuple[Any, ...]:
        """What the rules can see of `s`: equal keys, equal verdicts."""
        fam, p = s.ethertype, s.protocol
        if s.never_filtered:
            return (fam, "exempt")
        if p not in self.protos[fam]:
            return (fam, "other")
        if p in (TCP, UDP):
            port = s.port or 0
            inside = frozenset(r for r in self.ranges.get((fam, p), ()) if r[0] <= port <= r[1])
            return (fam, p, inside)
        if p == _ICMP_OF[fam]:
            tc = frozenset(
                (t, c)
                for t, c in self.icmp[fam]
                if t == s.icmp_type and (c is None or c == s.icmp_code)
            )
            return (fam, p, tc)
        return (fam, p)

    def of(self, s: Service) -> ServiceClass:
        return self._classes(s.ethertype)[self.key(s)]

    def all(self, families: Sequence[str] = ETHERTYPES) -> list[ServiceClass]:
        return [c for fam in families for c in self._classes(fam).values()]

    def _classes(self, fam: str) -> dict[tuple[Any, ...], ServiceClass]:
        got = self._by_family.get(fam)
        if got is None:
            got = self._by_family[fam] = self._enumerate(fam)
        return got

    def _enumerate(self, fam: str) -> dict[tuple[Any, ...], ServiceClass]:
        """One example of every key the rules can produce, named after what it holds."""
        found: dict[tuple[Any, ...], tuple[list[str], Service]] = {}

        def add(name: str, s: Service) -> None:
            k = self.key(s)
            if k in found:
                found[k][0].append(name)
            else:
                found[k] = ([name], s)

        icmp = _ICMP_OF[fam]
        for p in sorted(self.protos[fam]):
            pname = _NAMES.get(p, f"proto/{p}")
            if p in (TCP, UDP):
                cuts = {1, 65536}
                for lo, hi in self.ranges.get((fam, p), ()):
                    cuts |= {lo, hi + 1}
                edges = sorted(cuts)
                for lo, nxt in itertools.pairwise(edges):
                    add(f"{pname}/{_span(lo, nxt - 1)}", Service(fam, p, port=lo))
            elif p == icmp:
                types: dict[int, set[int]] = {}
                for t, c in self.icmp[fam]:
                    types.setdefault(t, set()).update(() if c is None else (c,))
                for t in sorted(types):
                    if fam == "IPv6" and t in NEVER_FILTERED_ICMPV6:
                        continue
                    for c in sorted(types[t]):
                        add(f"{pname}/{t}/{c}", Service(fam, p, icmp_type=t, icmp_code=c))
                    rest = next((c for c in range(256) if c not in types[t]), None)
                    if rest is not None:
                        add(f"{pname}/{t}", Service(fam, p, icmp_type=t, icmp_code=rest))
                free = [_ECHO[fam], *range(256)]
                spare = next((t for t in free if t not in types and not _exempt(fam, t)), None)
                if spare is not None:
                    add(f"{pname}/other", Service(fam, p, icmp_type=spare))
            else:
                add(pname, Service(fam, p))
        if fam == "IPv6":
            add("icmpv6/nd", Service(fam, ICMPV6, icmp_type=135))
        other = next((p for p in (TCP, UDP, icmp, 253, *range(256)) if p not in self.protos[fam]), None)  # fmt: skip
        if other is not None:
            kw: dict[str, int] = {}
            if other in (TCP, UDP):
                kw["port"] = 9
            elif other == icmp:
                kw["icmp_type"] = _ECHO[fam]
            add("other", Service(fam, other, **kw))
        split = {p for p in self.protos[fam] if (fam, p) in self.ranges} | (
            {icmp} if self.icmp[fam] else set()
        )
        out = {}
        for k, (names, example) in sorted(found.items(), key=lambda kv: _order(kv[0], kv[1][1])):
            p = example.protocol
            if len(k) == 3 and p not in split:
                name = _NAMES[p]  # every port or type of it: one class
            elif len(k) == 3 and not k[2]:
                name = f"{_NAMES[p]}/other"
            else:
                name = ",".join(names)
            out[k] = ServiceClass(fam, name, example, k)
        return out


def _order(key: tuple[Any, ...], example: Service) -> tuple[Any, ...]:
    """Classes as people read them: each protocol's, its "other" last, then exempt, then other."""
    if key[1] in ("exempt", "other"):
        return (1, key[1] == "other")
    empty = len(key) == 3 and not key[2]
    return (0, example.protocol, empty, example)


def _exempt(fam: str, icmp_type: int) -> bool:
    return fam == "IPv6" and icmp_type in NEVER_FILTERED_ICMPV6


# -- ports and their classes ---------------------------------------------------------------------
@dataclass(frozen=True)
class PortClass:
    """Ports every verdict treats alike."""

    key: tuple[Any, ...]
    ports: tuple[Port, ...]  # by name

    @property
    def name(self) -> str:
        more = len(self.ports) - 1
        return self.ports[0].name + (f" (+{more})" if more else "")

    @property
    def tenant(self) -> str:
        return self.ports[0].tenant

    def __str__(self) -> str:
        return self.name


def _sel_key(sel: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(sel.items()))


class Evaluator:
    """One snapshot's security model, indexed: membership, classes, verdicts."""

    def __init__(self, state: State) -> None:
        self.state = state
        self._groups: dict[str, list[SecurityGroup]] = {}
        self._policies: dict[str, list[Policy]] = {}
        for g in state.all("security_group"):
            self._groups.setdefault(g.tenant, []).append(g)
        for p in sorted(state.all("policy"), key=lambda p: (p.priority, p.name)):
            self._policies.setdefault(p.tenant, []).append(p)
        self._member: dict[str, tuple[SecurityGroup, ...]] = {}
        self._nets: dict[str, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
        self._atoms: dict[str, tuple[Any, ...]] = {}

    # -- membership ------------------------------------------------------------------------------
    def groups_of(self, port: Port) -> tuple[SecurityGroup, ...]:
        """The groups `port` is a member of, by name: it lists them, or their selector picks it."""
        got = self._member.get(port.id)
        if got is None:
            got = tuple(
                g
                for g in self._groups.get(port.tenant, ())
                if g.id in port.security_groups or selects(g.selector, port.labels)
            )
            self._member[port.id] = got
        return got

    def members(self, group: SecurityGroup) -> list[Port]:
        return [
            p
            for p in self.state.all("port")
            if p.tenant == group.tenant and group in self.groups_of(p)
        ]

    def policies_for(self, port: Port) -> list[Policy]:
        """The policies whose `applied_to` selects `port`, in the order they are tried."""
        return [
            p for p in self._policies.get(port.tenant, ()) if selects(p.applied_to, port.labels)
        ]

    def rules(self, tenant: str | None = None) -> Iterator[GroupRule]:
        """Every rule of a tenant's groups and policies (of every tenant: None)."""
        for bucket in (self._groups, self._policies):
            for t, objs in bucket.items():
                if tenant is None or t == tenant:
                    for o in objs:
                        yield from o.rules

    # -- verdicts ---------------------------------------------------------------------------------
    def intended(
        self,
        src: Port,
        dst: Port,
        service: Service,
        src_ip: str | None = None,
        dst_ip: str | None = None,
    ) -> Verdict:
        """The verdict the model intends for a connection from `src` to `dst` for `service`."""
        if src.id == dst.id:
            raise ValueError(f"port {src.name!r} to itself does not cross the network")
        if src.tenant != dst.tenant:
            return Verdict("deny", "isolation", "ports of different tenants never reach each other")
        if src.network != dst.network:
            return Verdict("deny", "topology", "the ports are on different networks")
        net: Network | None = self.state.get("network", src.network)
        for what, up in ((f"port {src.name}", src.admin_up), (f"port {dst.name}", dst.admin_up),
                         (f"network {net.name if net else src.network}", net is None or net.admin_up)):  # fmt: skip
            if not up:
                return Verdict("deny", "topology", f"{what} is down")
        if service.never_filtered:
            return Verdict("allow", "exempt", "neighbour discovery and MLD are never filtered")
        fam = service.ethertype
        src_ip = src_ip if src_ip is not None else address(src, fam)
        dst_ip = dst_ip if dst_ip is not None else address(dst, fam)
        out = self._side("egress", src, dst, dst_ip, service)
        if out.action != "allow":
            return Verdict(out.action, out.by, str(out), (out,))
        into = self._side("ingress", dst, src, src_ip, service)
        decided = into if into.rule is not None or out.rule is None else out
        return Verdict(into.action, decided.by, str(decided), (out, into))

    def _side(
        self, direction: str, local: Port, remote: Port, remote_ip: str | None, svc: Service
    ) -> Step:
        passed, plog = None, False
        for pol in self.policies_for(local):
            for i, r in enumerate(pol.rules):
                if r.direction != direction or not self.matches(r, svc, remote, remote_ip):
                    continue
                ref = RuleRef("policy", pol.name, pol.id, i)
                if r.action == "pass":
                    passed, plog = ref, r.log
                    break
                return Step(direction, local.name, r.action, "policy", ref, log=r.log)
            if passed is not None:
                break
        groups = self.groups_of(local)
        if not groups:
            why = f"port {local.name} is in no security group"
            return Step(direction, local.name, "allow", "default", None, passed, plog, why)
        mine = [(g, i, gr) for g in groups for i, gr in enumerate(g.rules) if gr.direction == direction]  # fmt: skip
        if direction == "egress" and not mine:
            why = "no group of the port has egress rules"
            return Step(direction, local.name, "allow", "default", None, passed, plog, why)
        for g, i, gr in mine:
            if self.matches(gr, svc, remote, remote_ip):
                ref = RuleRef("security_group", g.name, g.id, i)
                return Step(direction, local.name, "allow", "security_group", ref, passed, plog)
        names = ", ".join(g.name for g in groups)
        why = f"no {direction} rule of its groups ({names}) allows it"
        return Step(direction, local.name, "deny", "default", None, passed, plog, why)

    def matches(self, rule: GroupRule, svc: Service, remote: Port, remote_ip: str | None) -> bool:
        """Whether `rule` matches `svc` with `remote` (at `remote_ip`) at its other end."""
        if svc.ethertype not in rule.ethertypes:
            return False
        p = rule.protocol_number
        if p is not None and p != svc.protocol:
            return False
        rng = rule.port_range
        if rng is not None and not (svc.port is not None and rng[0] <= svc.port <= rng[1]):
            return False
        if rule.icmp_type is not None and svc.icmp_type != rule.icmp_type:
            return False
        if rule.icmp_code is not None and svc.icmp_code != rule.icmp_code:
            return False
        return self._peer(rule.remote, remote, remote_ip)

    def _peer(self, peer: Peer | None, port: Port, ip: str | None) -> bool:
        if peer is None:
            return True
        if peer.cidr is not None:
            return ip is not None and self._in(ip, peer.cidr)
        if peer.group is not None:
            return any(g.id == peer.group for g in self.groups_of(port))
        return selects(peer.selector, port.labels)

    def _in(self, ip: str, cidr: str) -> bool:
        net = self._nets.get(cidr)
        if net is None:
            net = self._nets[cidr] = ipaddress.ip_network(cidr)
        a = ipaddress.ip_address(ip)
        return a.version == net.version and a in net

    # -- classes -----------------------------------------------------------------------------------
    def _tenant_atoms(self, tenant: str) -> tuple[Any, ...]:
        """The selectors and CIDRs a tenant's policies and rules test ports with."""
        got = self._atoms.get(tenant)
        if got is None:
            sels = {_sel_key(p.applied_to) for p in self._policies.get(tenant, ())}
            cidrs: set[str] = set()
            for r in self.rules(tenant):
                peer = r.remote
                if peer is not None and peer.selector is not None:
                    sels.add(_sel_key(peer.selector))
                if peer is not None and peer.cidr is not None:
                    cidrs.add(peer.cidr)
            got = self._atoms[tenant] = (sorted(sels), sorted(cidrs))
        return got

    def class_key(self, port: Port) -> tuple[Any, ...]:
        """Equal for two ports exactly when no verdict can tell them apart."""
        sels, cidrs = self._tenant_atoms(port.tenant)
        addrs = []
        for fam in ETHERTYPES:
            a = address(port, fam)
            addrs.append((a is not None, tuple(a is not None and self._in(a, c) for c in cidrs)))
        return (
            port.tenant,
            port.network,
            port.admin_up,
            tuple(sorted(g.id for g in self.groups_of(port))),
            tuple(all(port.labels.get(k) == v for k, v in s) for s in sels),
            tuple(addrs),
        )

    def classes(self, tenant: str | None = None) -> list[PortClass]:
        """The ports of a tenant (of all: None) in classes, each class's ports by name."""
        by: dict[tuple[Any, ...], list[Port]] = {}
        for p in self.state.all("port"):
            if tenant is None or p.tenant == tenant:
                by.setdefault(self.class_key(p), []).append(p)
        return sorted((PortClass(k, tuple(ps)) for k, ps in by.items()), key=lambda c: c.name)

    def services(self, tenant: str | None = None) -> ServiceClasses:
        """The service classes a tenant's rules (every tenant's: None) tell apart."""
        return ServiceClasses(self.rules(tenant))


def _port(state: State, ref: Port | str) -> Port:
    if isinstance(ref, Port):
        return ref
    p = state.find("port", ref)
    if p is None:
        raise ValueError(f"no port {ref!r}")
    return p  # type: ignore[no-any-return]


def intended(
    state: State,
    src: Port | str,
    dst: Port | str,
    service: Service | str,
    src_ip: str | None = None,
    dst_ip: str | None = None,
) -> Verdict:
    """What the model intends for a connection from `src` to `dst` (ports or their ids)."""
    svc = Service.parse(service) if isinstance(service, str) else service
    return Evaluator(state).intended(_port(state, src), _port(state, dst), svc, src_ip, dst_ip)


# -- the matrix and what a change does to it -----------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """The intended verdict from one class of ports to another for one class of services."""

    src: PortClass
    dst: PortClass
    service: ServiceClass
    verdict: Verdict


def _pair(a: Sequence[Port], b: Sequence[Port]) -> tuple[Port, Port] | None:
    """Two distinct ports, one of each: a class with one port has no pair with itself."""
    for p in a:
        for q in b:
            if p.id != q.id:
                return p, q
    return None


def _families(p: Port, q: Port) -> tuple[str, ...]:
    """The families two ports can talk in: both have an address of it."""
    return tuple(f for f in ETHERTYPES if address(p, f) is not None and address(q, f) is not None)


def matrix(
    state: State, tenant: str | None = None, families: Sequence[str] = ETHERTYPES
) -> list[Cell]:
    """Per tenant, the verdict for every pair of port classes and every service class of a
    family both have addresses of.

    Pairs of different tenants are left out: they never reach each other."""
    ev = Evaluator(state)
    tenants = [tenant] if tenant is not None else [t.id for t in state.all("tenant")]
    out = []
    for t in tenants:
        classes = ev.classes(t)
        services = ev.services(t).all(families)
        for a in classes:
            for b in classes:
                pair = _pair(a.ports, b.ports)
                if pair is None:
                    continue
                fams = _families(*pair)
                for s in services:
                    if s.ethertype in fams:
                        out.append(Cell(a, b, s, ev.intended(*pair, s.example)))
    return out


@dataclass(frozen=True)
class Reach:
    """Connections a change opens or closes: from these ports to those, for a class of services."""

    src: tuple[str, ...]  # port names
    dst: tuple[str, ...]
    service: ServiceClass
    before: Verdict
    after: Verdict
    tenant: str = ""  # the ports' tenant, by id

    @property
    def opened(self) -> bool:
        return self.after.allowed and not self.before.allowed

    def __str__(self) -> str:
        verb = "opens" if self.opened else "closes"
        return f"{verb} {','.join(self.src)} -> {','.join(self.dst)} {self.service}"


def delta(before: State, after: State, tenant: str | None = None) -> list[Reach]:
    """What changes from `before` to `after` between ports that are in both, in the families
    both have addresses of: opened and closed.

    Ports are classed by their classes in both snapshots, services by the
    rules of both, so every pair of ports and every service is represented."""
    eb, ea = Evaluator(before), Evaluator(after)
    both: dict[str, tuple[Port, Port]] = {}
    for p in after.all("port"):
        q = before.get("port", p.id)
        if q is not None and (tenant is None or p.tenant == tenant):
            both[p.id] = (q, p)
    by: dict[tuple[Any, ...], list[tuple[Port, Port]]] = {}
    for q, p in sorted(both.values(), key=lambda qp: qp[1].name):
        by.setdefault((eb.class_key(q), ea.class_key(p)), []).append((q, p))
    out = []
    for t in sorted({p.tenant for _, p in both.values()}):
        rules = [*eb.rules(t), *ea.rules(t)]
        services = ServiceClasses(rules).all()
        groups = [ps for ps in by.values() if ps[0][1].tenant == t]
        for a in groups:
            for b in groups:
                pair = _pair([p for _, p in a], [p for _, p in b])
                if pair is None:
                    continue
                src, dst = pair
                fams = _families(src, dst)
                for s in services:
                    if s.ethertype not in fams:
                        continue
                    vb = eb.intended(both[src.id][0], both[dst.id][0], s.example)
                    va = ea.intended(src, dst, s.example)
                    if vb.allowed != va.allowed:
                        names = tuple(p.name for _, p in a), tuple(p.name for _, p in b)
                        out.append(Reach(*names, s, vb, va, t))
    return out

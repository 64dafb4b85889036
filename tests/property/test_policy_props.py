"""The intended-verdict evaluator on random labels, groups and policies.

What must hold whatever the model: ports of one class and services of one
class are never told apart; the class matrix is every pair's verdict;
nothing crosses tenants; no security leaves everything open; a `pass` hands
the decision to the groups, skipping later policies; an ingress allow rule never closes
anything; and `delta` names exactly the (ports, service) pairs a change opens
or closes.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vnet.model import Network, Policy, Port, SecurityGroup, State, Tenant
from vnet.model.policy import (
    Evaluator,
    Service,
    ServiceClasses,
    Verdict,
    address,
    delta,
    matrix,
)
from vnet.model.secrules import GroupRule, PolicyRule

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TENANTS = {"t1": ("n1", "n2"), "t2": ("n3",)}
GROUPS = {"t1": ("g0", "g1", "g2"), "t2": ("g3",)}
SERVICES = [
    Service(fam, 6, port=p) for fam in ("IPv4", "IPv6") for p in (1, 22, 79, 80, 81, 443, 444)
] + [
    Service(fam, 17, port=p) for fam in ("IPv4", "IPv6") for p in (53, 80)
] + [
    Service("IPv4", 1, icmp_type=t, icmp_code=c) for t, c in ((8, 0), (0, 0), (3, 4), (3, 1))
] + [
    Service("IPv6", 58, icmp_type=t, icmp_code=c) for t, c in ((128, 0), (129, 0), (135, 0), (1, 4))
] + [Service(fam, p) for fam in ("IPv4", "IPv6") for p in (47, 50)]  # fmt: skip

LABELS = [{}, {"tier": "a"}, {"tier": "b"}, {"env": "x"}, {"tier": "a", "env": "x"},
          {"tier": "b", "env": "y"}]  # fmt: skip
labels = st.sampled_from(LABELS)
CIDRS = ["10.0.0.0/30", "10.0.0.4/30", "0.0.0.0/0", "fd00::/126"]
MATCHES: list[dict[str, Any]] = [
    {"protocol": "any"}, {"protocol": "tcp", "ports": "80"}, {"protocol": "tcp", "ports": "22-80"},
    {"protocol": "tcp"}, {"protocol": "udp", "ports": "53"}, {"protocol": "icmp"},
    {"protocol": "icmp", "icmp_type": 8}, {"protocol": "icmp", "icmp_type": 3, "icmp_code": 4},
    {"protocol": "icmpv6", "icmp_type": 128}, {"protocol": 47}, {"protocol": "tcp", "ethertype": "IPv6"},
]  # fmt: skip


def _pool(tenant: str, policy: bool) -> list[GroupRule]:
    """Every rule the models are made of, checked once: one draw picks one."""
    remotes: list[dict[str, Any] | None] = [
        None, *({"cidr": c} for c in CIDRS), *({"group": g} for g in GROUPS[tenant]),
        *({"selector": sel} for sel in LABELS[:4]),
    ]  # fmt: skip
    out: list[GroupRule] = []
    actions = ("allow", "deny", "reject", "pass") if policy else (None,)
    for action in actions:
        for m in MATCHES:
            for direction in ("ingress", "egress"):
                for remote in remotes:
                    r = {"direction": direction, **m}
                    if remote is not None:
                        r["from" if direction == "ingress" else "to"] = remote
                    if action is not None:
                        r |= {"action": action, "log": action == "deny"}
                    with contextlib.suppress(ValidationError):  # a CIDR of the other family
                        out.append((PolicyRule if policy else GroupRule).model_validate(r))
    return out


POOLS = {(t, pol): _pool(t, pol) for t in TENANTS for pol in (False, True)}


def rules(tenant: str, policy: bool) -> st.SearchStrategy[GroupRule]:
    return st.sampled_from(POOLS[(tenant, policy)])


@st.composite
def models(draw: st.DrawFn) -> State:
    objs: list[Any] = []
    for t, nets in TENANTS.items():
        objs.append(Tenant(id=t, name=t))
        objs += [Network(id=n, name=n, tenant=t) for n in nets]
        for g in GROUPS[t]:
            sel = draw(st.sampled_from([None, *LABELS]))
            rs = draw(st.lists(rules(t, False), max_size=3))
            objs.append(SecurityGroup(id=g, name=g, tenant=t, selector=sel, rules=rs))
        prios = draw(st.lists(st.integers(1, 9), unique=True, max_size=2))
        for i, prio in enumerate(prios):
            rs = draw(st.lists(rules(t, True), max_size=3))
            objs.append(Policy(id=f"{t}p{i}", name=f"p{i}", tenant=t, priority=prio,
                               applied_to=draw(labels), rules=rs))  # fmt: skip
    for i in range(draw(st.integers(2, 8))):
        t = draw(st.sampled_from(["t1", "t1", "t1", "t2"]))
        ips = [{"ip": f"10.0.0.{i + 1}"}] + ([{"ip": f"fd00::{i + 1}"}] if i % 3 else [])
        objs.append(Port(
            id=f"p{i}", name=f"p{i}", tenant=t, network=draw(st.sampled_from((TENANTS[t][0],) * 3 + TENANTS[t][1:])),
            labels=draw(labels), fixed_ips=ips, admin_up=draw(st.sampled_from([True] * 7 + [False])),
            security_groups=draw(st.lists(st.sampled_from(GROUPS[t]), unique=True, max_size=2)),
        ))  # fmt: skip
    return State.of(objs)


def proj(v: Verdict) -> tuple[Any, ...]:
    """A verdict without port names: what two ports of one class must share."""
    return (v.action, v.by, tuple((s.direction, s.action, s.by, s.rule, s.passed, s.log)
                                  for s in v.steps))  # fmt: skip


def pairs(state: State) -> list[tuple[Port, Port]]:
    ports = state.all("port")
    return [(p, q) for p, q in itertools.permutations(ports, 2)]


@SETTINGS
@given(models())
def test_ports_of_one_class_are_never_told_apart(state: State) -> None:
    ev = Evaluator(state)
    for c in ev.classes():
        for p, q in itertools.combinations(c.ports, 2):
            for r in state.all("port"):
                if r.id in (p.id, q.id):
                    continue
                for s in SERVICES:
                    assert proj(ev.intended(p, r, s)) == proj(ev.intended(q, r, s)), (p, q, r, s)
                    assert proj(ev.intended(r, p, s)) == proj(ev.intended(r, q, s)), (p, q, r, s)


@SETTINGS
@given(models())
def test_services_of_one_class_are_never_told_apart(state: State) -> None:
    ev = Evaluator(state)
    for tenant in TENANTS:
        sc = ev.services(tenant)
        by: dict[Any, list[Service]] = {}
        for s in SERVICES:
            by.setdefault(sc.key(s), []).append(s)
            assert sc.key(sc.of(s).example) == sc.key(s)  # every service has its class
        for p, q in pairs(state):
            if p.tenant != tenant:
                continue
            for same in by.values():
                assert len({proj(ev.intended(p, q, s)) for s in same}) == 1, (p, q, same)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(rules("t1", True), max_size=6),
    st.sampled_from(["IPv4", "IPv6"]),
    st.integers(0, 255),
    st.integers(1, 65535),
    st.integers(0, 255),
    st.integers(0, 255),
)
def test_every_service_falls_into_a_class(
    rs: list[GroupRule], fam: str, proto: int, port: int, t: int, c: int
) -> None:
    if proto in (6, 17):
        s = Service(fam, proto, port=port)
    elif proto == (1 if fam == "IPv4" else 58):
        s = Service(fam, proto, icmp_type=t, icmp_code=c)
    else:
        s = Service(fam, proto)
    sc = ServiceClasses(rs)
    cls = sc.of(s)
    assert cls.key == sc.key(s) and sc.key(cls.example) == cls.key
    assert len({k.name for k in sc.all([fam])}) == len(sc.all([fam]))  # names are distinct


@SETTINGS
@given(models())
def test_the_class_matrix_is_every_pairs_verdict(state: State) -> None:
    ev = Evaluator(state)
    cells = {(c.src.key, c.dst.key, c.service.key): c.verdict for c in matrix(state)}
    services = {t: ev.services(t) for t in TENANTS}
    for p, q in pairs(state):
        if p.tenant != q.tenant:
            v = ev.intended(p, q, SERVICES[0])
            assert (v.action, v.by) == ("deny", "isolation")  # nothing ever crosses tenants
            continue
        sc = services[p.tenant]
        for s in [*SERVICES, *(c.example for c in sc.all())]:
            if address(p, s.ethertype) is None or address(q, s.ethertype) is None:
                assert (ev.class_key(p), ev.class_key(q), sc.key(s)) not in cells
                continue
            cell = cells[(ev.class_key(p), ev.class_key(q), sc.key(s))]
            assert proj(ev.intended(p, q, s)) == proj(cell), (p, q, s)


@SETTINGS
@given(models())
def test_without_groups_and_policies_everything_within_a_network_is_open(state: State) -> None:
    bare = State.of(o for k in ("tenant", "network", "port") for o in state.all(k))
    ports = [p.changed(security_groups=[]) for p in bare.all("port")]
    bare = bare.apply([])
    for p in ports:
        bare.objects["port"][p.id] = p
    ev = Evaluator(bare)
    for p, q in pairs(bare):
        v = ev.intended(p, q, SERVICES[3])
        open_path = p.tenant == q.tenant and p.network == q.network and p.admin_up and q.admin_up
        assert v.allowed is open_path, (p, q, v)


@SETTINGS
@given(models())
def test_a_pass_hands_over_to_the_groups(state: State) -> None:
    """A pass of everything tried first is as if there were no policies; tried last, as if it
    were not there."""
    passes = [PolicyRule.model_validate({"direction": d, "action": "pass"})
              for d in ("ingress", "egress")]  # fmt: skip
    plain = Evaluator(state)
    bare = state.apply([])
    bare.objects["policy"] = {}
    none = Evaluator(bare)
    for prio, same_as in ((0, none), (65535, plain)):
        with_pass = state.apply([])
        for t in TENANTS:
            with_pass.objects["policy"][f"{t}pass"] = Policy(
                id=f"{t}pass", name="pass", tenant=t, priority=prio, rules=passes
            )
        ev = Evaluator(with_pass)
        for p, q in pairs(state):
            for s in SERVICES:
                a, b = same_as.intended(p, q, s), ev.intended(p, q, s)
                assert (a.action, a.rule) == (b.action, b.rule), (prio, p, q, s)


@SETTINGS
@given(models(), st.data())
def test_an_ingress_allow_rule_never_closes_anything(state: State, data: st.DataObject) -> None:
    g = data.draw(st.sampled_from(state.all("security_group")))
    extra = data.draw(rules(g.tenant, False).filter(lambda r: r.direction == "ingress"))
    assert isinstance(extra, GroupRule)
    wider = state.apply([])
    wider.objects["security_group"][g.id] = g.changed(
        rules=[*(r.model_dump() for r in g.rules), extra.model_dump()]
    )
    before, after = Evaluator(state), Evaluator(wider)
    for p, q in pairs(state):
        for s in SERVICES:
            if before.intended(p, q, s).allowed:
                assert after.intended(p, q, s).allowed, (p, q, s, extra)


@st.composite
def changes(draw: st.DrawFn, state: State) -> State:
    """A relabelled port, a port in other groups, a dropped policy, or a group's new rules."""
    out = state.apply([])
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["labels", "groups", "policy", "rules"]))
        if what in ("labels", "groups"):
            p = draw(st.sampled_from(out.all("port")))
            if what == "labels":
                out.objects["port"][p.id] = p.changed(labels=draw(labels))
            else:
                gs = draw(st.lists(st.sampled_from(GROUPS[p.tenant]), unique=True, max_size=2))
                out.objects["port"][p.id] = p.changed(security_groups=gs)
        elif what == "policy" and out.all("policy"):
            pol = draw(st.sampled_from(out.all("policy")))
            del out.objects["policy"][pol.id]
        else:
            g = draw(st.sampled_from(out.all("security_group")))
            rs = draw(st.lists(rules(g.tenant, False), max_size=3))
            out.objects["security_group"][g.id] = g.changed(rules=[r.model_dump() for r in rs])
    return out


@SETTINGS
@given(models(), st.data())
def test_delta_names_exactly_what_a_change_opens_and_closes(
    state: State, data: st.DataObject
) -> None:
    after = data.draw(changes(state))
    found = delta(state, after)
    eb, ea = Evaluator(state), Evaluator(after)
    for p, q in pairs(after):
        if p.tenant != q.tenant:
            continue
        sc = ServiceClasses([*eb.rules(p.tenant), *ea.rules(p.tenant)])
        for c in sc.all():
            if address(p, c.ethertype) is None or address(q, c.ethertype) is None:
                continue  # no connection to open or close
            was = eb.intended(state.get("port", p.id), state.get("port", q.id), c.example)
            now = ea.intended(p, q, c.example)
            listed = [r for r in found
                      if p.name in r.src and q.name in r.dst and r.service.key == c.key]  # fmt: skip
            assert len(listed) == (was.allowed != now.allowed), (p, q, c, listed)
            if listed:
                assert listed[0].opened is now.allowed

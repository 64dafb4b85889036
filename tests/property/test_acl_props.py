"""The compiled firewall against the verdicts the model intends, on random models.

Random labels, groups (by selector and by listing), ordered policies with
every action, rules of every kind of service and remote, ports on two
chassis (one reached by Geneve, one by VXLAN) and a second tenant with the
same addresses: `verify` -- every pair of port classes and every service
class, a first packet and its reply through the real pipeline -- finds no
disagreement, and nothing crosses tenants.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vnet.controller.northbound import Northbound
from vnet.lab.verify import check
from vnet.store import SqliteStore

LABELS = [{}, {"tier": "a"}, {"tier": "b"}, {"env": "x"}, {"tier": "a", "env": "x"}]
SERVICES: list[dict[str, Any]] = [
    {"protocol": "any"}, {"protocol": "tcp", "ports": "80"}, {"protocol": "tcp", "ports": "22-80"},
    {"protocol": "tcp"}, {"protocol": "udp", "ports": "53"}, {"protocol": "icmp"},
    {"protocol": "icmp", "icmp_type": 8}, {"protocol": "icmpv6", "icmp_type": 128},
    {"protocol": 47}, {"protocol": "tcp", "ethertype": "IPv6"},
]  # fmt: skip
REMOTES: list[dict[str, Any] | None] = [
    None, {"cidr": "10.0.0.0/29"}, {"cidr": "10.0.0.8/29"}, {"cidr": "fd00::/125"},
    {"group": "g0"}, {"group": "g1"}, {"selector": {"tier": "a"}}, {"selector": {"env": "x"}},
]  # fmt: skip


def _remote_fits(svc: dict[str, Any], remote: dict[str, Any] | None) -> bool:
    cidr = (remote or {}).get("cidr")
    if cidr is None:
        return True
    fam = "IPv6" if ":" in cidr else "IPv4"
    want = svc.get("ethertype") or {"icmp": "IPv4", "icmpv6": "IPv6"}.get(str(svc["protocol"]))
    return want is None or want == fam


@st.composite
def rule(draw: st.DrawFn, policy: bool) -> dict[str, Any]:
    svc = draw(st.sampled_from(SERVICES))
    direction = draw(st.sampled_from(["ingress", "egress"]))
    remote = draw(st.sampled_from([r for r in REMOTES if _remote_fits(svc, r)]))
    r = {"direction": direction, **svc}
    if remote is not None:
        r["from" if direction == "ingress" else "to"] = remote
    if policy:
        r["action"] = draw(st.sampled_from(["allow", "deny", "reject", "pass"]))
    return r


@st.composite
def models(draw: st.DrawFn) -> dict[str, Any]:
    groups = [
        {"name": g, "tenant": "t1", "selector": draw(st.sampled_from([None, *LABELS[1:]])),
         "rules": draw(st.lists(rule(False), max_size=3))}
        for g in ("g0", "g1", "g2")
    ]  # fmt: skip
    prios = draw(st.lists(st.integers(1, 9), unique=True, max_size=2))
    policies = [
        {"name": f"p{i}", "tenant": "t1", "priority": prio, "applied_to": draw(st.sampled_from(LABELS)),
         "rules": draw(st.lists(rule(True), max_size=3))}
        for i, prio in enumerate(prios)
    ]  # fmt: skip
    ports = []
    for i in range(draw(st.integers(2, 4))):
        ips = [{"ip": f"10.0.0.{i * 4 + 2}"}] + ([{"ip": f"fd00::{i + 2}"}] if i % 2 == 0 else [])
        ports.append({
            "name": f"a{i}", "tenant": "t1", "network": "n", "chassis": f"hv{i % 2 + 1}",
            "labels": draw(st.sampled_from(LABELS)), "fixed_ips": ips,
            "security_groups": draw(st.lists(st.sampled_from(["g0", "g1", "g2"]), unique=True, max_size=1)),
        })  # fmt: skip
    # another tenant, the same addresses, one port on each chassis
    ports += [
        {"name": f"b{i}", "tenant": "t2", "network": "n", "chassis": f"hv{i + 1}",
         "fixed_ips": [{"ip": f"10.0.0.{i * 4 + 2}"}]}
        for i in range(2)
    ]  # fmt: skip
    return {
        "tenants": [{"name": "t1"}, {"name": "t2"}],
        "chassis": [{"name": "hv1", "underlay": "192.0.2.1"},
                    {"name": "hv2", "underlay": "192.0.2.2", "encap": "vxlan"}],
        "networks": [{"name": "n", "tenant": t} for t in ("t1", "t2")],
        "subnets": [{"name": "s4", "tenant": t, "network": "n", "cidr": "10.0.0.0/24"} for t in ("t1", "t2")]
        + [{"name": "s6", "tenant": "t1", "network": "n", "cidr": "fd00::/64"}],
        "security_groups": groups,
        "policies": policies,
        "ports": ports,
    }  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models())
def test_the_flows_do_what_the_model_intends(doc: dict[str, Any]) -> None:
    nb = Northbound(SqliteStore())
    nb.apply(doc)
    report = check(nb.state())
    assert report.disagreements == [], "\n".join(map(str, report.disagreements))
    assert report.cells  # something was tried

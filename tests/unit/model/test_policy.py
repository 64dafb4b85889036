"""The intended verdicts of security groups and policies, scenario by scenario."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from vnet.controller.northbound import Northbound
from vnet.model import State
from vnet.model.policy import (
    Evaluator,
    Service,
    ServiceClasses,
    Verdict,
    delta,
    intended,
    matrix,
)
from vnet.model.secrules import GroupRule
from vnet.store import SqliteStore

ROOT = Path(__file__).resolve().parents[3]
BASE: dict[str, Any] = {
    "tenants": [{"name": "t"}, {"name": "u"}],
    "networks": [{"name": "n", "tenant": "t"}, {"name": "m", "tenant": "t"},
                 {"name": "n", "tenant": "u"}],
    "subnets": [{"name": "s", "tenant": "t", "network": "n", "cidr": "10.0.0.0/24"},
                {"name": "s6", "tenant": "t", "network": "n", "cidr": "fd00::/64"},
                {"name": "sm", "tenant": "t", "network": "m", "cidr": "10.1.0.0/24"},
                {"name": "s", "tenant": "u", "network": "n", "cidr": "10.0.0.0/24"}],
    "ports": [
        {"name": "a", "tenant": "t", "network": "n", "labels": {"role": "a"},
         "fixed_ips": [{"ip": "10.0.0.10"}, {"ip": "fd00::10"}]},
        {"name": "b", "tenant": "t", "network": "n", "labels": {"role": "b"},
         "fixed_ips": [{"ip": "10.0.0.20"}, {"ip": "fd00::20"}]},
        {"name": "c", "tenant": "t", "network": "n", "labels": {"role": "c"},
         "fixed_ips": [{"ip": "10.0.0.30"}]},
        {"name": "far", "tenant": "t", "network": "m", "labels": {"role": "a"}},
        {"name": "other", "tenant": "u", "network": "n", "labels": {"role": "a"}},
    ],
}  # fmt: skip


def model(**kinds: Any) -> State:
    doc = copy.deepcopy(BASE)
    for k, v in kinds.items():
        doc[k] = v if k != "ports" else [*doc["ports"], *v]
    nb = Northbound(SqliteStore())
    nb.apply(doc)
    return nb.state()


def verdict(st: State, src: str, dst: str, service: str, **kw: Any) -> Verdict:
    p = {(q.name, st.get("tenant", q.tenant).name): q for q in st.all("port")}
    tenant = kw.pop("tenant", "t")
    return intended(st, p[(src, tenant)], p[(dst, kw.pop("dst_tenant", tenant))], service, **kw)


def rule(direction: str = "ingress", **kw: Any) -> dict[str, Any]:
    return {"direction": direction, **kw}


def group(name: str, *rules: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"name": name, "tenant": "t", "rules": list(rules), **kw}


def policy(name: str, priority: int, *rules: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"name": name, "tenant": "t", "priority": priority, "rules": list(rules), **kw}


# -- the example ------------------------------------------------------------------------------------
def test_the_example_intends_what_its_comment_says() -> None:
    nb = Northbound(SqliteStore())
    nb.apply(yaml.safe_load((ROOT / "examples/microseg.yaml").read_text()))
    st = nb.state()
    port = {p.name: p for p in st.all("port")}

    def v(a: str, b: str, s: str) -> tuple[str, str | None]:
        got = intended(st, port[a], port[b], s)
        return got.action, str(got.rule) if got.rule else None

    assert v("client", "web", "tcp/80") == ("allow", "security group web rule 0")
    assert v("client", "web", "icmp/8") == ("allow", "security group web rule 1")
    assert v("web", "db", "tcp/5432") == ("allow", "security group db rule 0")
    assert v("client", "db", "tcp/5432") == ("reject", "policy protect-db rule 0")
    assert intended(st, port["client"], port["db"], "tcp/5432").log
    assert v("client", "db", "icmp/8") == ("deny", None)  # no rule: db's default
    assert v("web", "client", "tcp/80") == ("deny", None)  # the reverse direction
    assert v("db", "web", "tcp/80") == ("deny", None)
    assert v("client", "web", "tcp/22") == ("deny", None)
    assert v("web", "db", "icmp/8") == ("deny", None)
    assert v("web", "client", "ipv6 icmpv6/135") == ("allow", None)  # ND is never filtered
    allowed = {(c.src.name, c.dst.name, c.service.name) for c in matrix(st) if c.verdict.allowed}
    assert allowed == {  # IPv4 only: no port has an IPv6 address to try
        ("client", "web", "tcp/80"),
        ("client", "web", "icmp/8"),
        ("web", "db", "tcp/5432"),
    }


# -- defaults and topology -----------------------------------------------------------------------
def test_no_group_and_no_policy_keeps_everything_open_within_a_network() -> None:
    st = model()
    for s in ("tcp/80", "udp/53", "icmp/8", "proto/47", "ipv6 tcp/443", "ipv6 icmpv6/128"):
        v = verdict(st, "a", "b", s)
        assert v.allowed and v.by == "default" and v.rule is None, (s, v)
    v = verdict(st, "a", "other", "tcp/80", dst_tenant="u")
    assert (v.action, v.by) == ("deny", "isolation")
    assert (verdict(st, "a", "far", "tcp/80").by, verdict(st, "a", "far", "tcp/80").action) == (
        "topology",
        "deny",
    )


def test_a_port_or_network_that_is_down_forwards_nothing() -> None:
    st = model(ports=[{"name": "off", "tenant": "t", "network": "n", "admin_up": False}])
    v = verdict(st, "a", "off", "tcp/80")
    assert (v.action, v.by) == ("deny", "topology") and "port off is down" in v.reason
    with pytest.raises(ValueError, match="itself"):
        verdict(st, "a", "a", "tcp/80")


def test_a_member_is_default_deny_ingress_and_its_egress_stays_open() -> None:
    st = model(security_groups=[group("g", selector={"role": "b"})])
    v = verdict(st, "a", "b", "tcp/80")
    assert (v.action, v.by, v.rule) == ("deny", "default", None)
    assert v.step is not None and v.step.direction == "ingress" and v.step.port == "b"
    assert verdict(st, "b", "a", "tcp/80").allowed  # b's egress: no egress rules


def test_egress_rules_close_the_rest_of_egress() -> None:
    st = model(security_groups=[
        group("g", rule("egress", protocol="tcp", ports="443", to={"cidr": "10.0.0.0/25"}),
              selector={"role": "a"}),
    ])  # fmt: skip
    v = verdict(st, "a", "b", "tcp/443")
    assert v.allowed and str(v.rule) == "security group g rule 0"
    v = verdict(st, "a", "b", "tcp/80")
    assert v.action == "deny" and v.steps[0].direction == "egress" and len(v.steps) == 1
    # an IPv4 CIDR says nothing of IPv6: the rule is IPv4's only
    assert verdict(st, "a", "b", "ipv6 tcp/443").action == "deny"
    assert verdict(st, "b", "c", "tcp/80").allowed  # b and c are in no group
    v = verdict(st, "b", "a", "tcp/80")  # a is a member: no ingress rule, so ingress is closed
    assert v.action == "deny" and v.step is not None and v.step.direction == "ingress"


# -- membership and remotes ----------------------------------------------------------------------
def test_membership_is_listed_or_selected_and_remotes_match_members() -> None:
    st = model(
        security_groups=[
            group("front", selector={"role": "a"}),
            group("back", rule(protocol="tcp", ports="5432", **{"from": {"group": "front"}})),
        ],
        ports=[{"name": "d", "tenant": "t", "network": "n", "security_groups": ["back", "front"]}],
    )
    ev = Evaluator(st)
    g = {x.name: x for x in st.all("security_group")}
    # by label (in any network of the tenant), and listed
    assert [p.name for p in ev.members(g["front"])] == ["a", "d", "far"]
    assert [p.name for p in ev.members(g["back"])] == ["d"]
    assert verdict(st, "a", "d", "tcp/5432").allowed
    assert verdict(st, "b", "d", "tcp/5432").action == "deny"  # b is no member of front
    assert verdict(st, "a", "d", "tcp/5433").action == "deny"


@pytest.mark.parametrize(
    ("remote", "src", "allowed"),
    [
        ({"cidr": "10.0.0.16/28"}, "b", True),  # 10.0.0.20
        ({"cidr": "10.0.0.16/28"}, "a", False),  # 10.0.0.10
        ({"cidr": "10.0.0.20"}, "b", True),
        ({"selector": {"role": "b"}}, "b", True),
        ({"selector": {"role": "b"}}, "a", False),
        ({"selector": {}}, "a", True),  # every port of the tenant
    ],
)
def test_remotes(remote: dict[str, Any], src: str, allowed: bool) -> None:
    st = model(security_groups=[group("g", rule(**{"from": remote}), selector={"role": "c"})])
    assert verdict(st, src, "c", "udp/53").allowed is allowed


def test_an_address_given_is_the_one_cidrs_see() -> None:
    st = model(security_groups=[group("g", rule(**{"from": {"cidr": "10.0.0.128/25"}}),
                                      selector={"role": "c"})])  # fmt: skip
    assert not verdict(st, "a", "c", "tcp/1").allowed
    assert verdict(st, "a", "c", "tcp/1", src_ip="10.0.0.200").allowed
    # c has no IPv6 address: an IPv6 CIDR never holds it, IPv6 traffic to it is the default's
    st = model(security_groups=[group("g", rule("egress", to={"cidr": "fd00::/64"}),
                                      selector={"role": "a"})])  # fmt: skip
    assert verdict(st, "a", "b", "ipv6 tcp/1").allowed
    assert verdict(st, "a", "c", "ipv6 tcp/1").action == "deny"


@pytest.mark.parametrize(
    ("fields", "service", "allowed"),
    [
        ({"protocol": "icmp"}, "icmp/3/1", True),
        ({"protocol": "icmp"}, "ipv6 icmpv6/128", False),
        ({"protocol": "icmp", "icmp_type": 8}, "icmp/8/0", True),
        ({"protocol": "icmp", "icmp_type": 8}, "icmp/0/0", False),
        ({"protocol": "icmp", "icmp_type": 3, "icmp_code": 4}, "icmp/3/4", True),
        ({"protocol": "icmp", "icmp_type": 3, "icmp_code": 4}, "icmp/3/3", False),
        ({"protocol": "icmpv6", "icmp_type": 128}, "ipv6 icmpv6/128", True),
        ({"protocol": 47}, "proto/47", True),
        ({"protocol": 47}, "proto/50", False),
        ({"protocol": "udp", "ports": "53-60"}, "udp/60", True),
        ({"protocol": "udp", "ports": "53-60"}, "udp/61", False),
        ({"protocol": "udp", "ports": "53-60"}, "tcp/53", False),
        ({"ethertype": "IPv6"}, "tcp/1", False),
        ({"ethertype": "IPv6"}, "ipv6 tcp/1", True),
        ({}, "ipv6 proto/50", True),
    ],
)
def test_what_a_rule_matches(fields: dict[str, Any], service: str, allowed: bool) -> None:
    st = model(security_groups=[group("g", rule(**fields), selector={"role": "b"})])
    assert verdict(st, "a", "b", service).allowed is allowed


# -- policies ----------------------------------------------------------------------------------------
def test_policies_go_by_priority_and_rule_order_first_match_wins() -> None:
    st = model(policies=[
        policy("late", 200, rule(action="allow")),
        policy("early", 100, rule(action="deny", protocol="tcp", ports="22"),
               rule(action="reject", protocol="tcp"), rule(action="allow", protocol="tcp")),
    ])  # fmt: skip
    v = verdict(st, "a", "b", "tcp/22")
    assert (v.action, str(v.rule)) == ("deny", "policy early rule 0")
    v = verdict(st, "a", "b", "tcp/80")
    assert (v.action, str(v.rule)) == ("reject", "policy early rule 1")
    v = verdict(st, "a", "b", "udp/53")
    assert (v.action, str(v.rule)) == ("allow", "policy late rule 0")


def test_a_policy_allow_ends_the_side_and_pass_hands_it_to_the_groups() -> None:
    deny_all = group("closed", selector={"role": "b"})  # no rules: default deny ingress
    st = model(
        security_groups=[deny_all],
        policies=[
            policy("p", 10, rule(action="allow", protocol="tcp", ports="80"),
                   rule(action="pass", protocol="tcp", log=True),
                   rule(action="allow")),
        ],
    )  # fmt: skip
    v = verdict(st, "a", "b", "tcp/80")
    assert v.allowed and str(v.rule) == "policy p rule 0"
    v = verdict(st, "a", "b", "tcp/81")  # passed: the group decides, and the rest of p is skipped
    assert v.action == "deny" and v.by == "default" and v.log
    assert v.step is not None and str(v.step.passed) == "policy p rule 1"
    assert verdict(st, "a", "b", "udp/1").allowed  # not passed: rule 2


def test_applied_to_and_direction_pick_the_side() -> None:
    st = model(policies=[
        policy("out", 10, rule("egress", action="deny", protocol="tcp", ports="25"),
               applied_to={"role": "a"}),
        policy("in", 20, rule("ingress", action="reject", **{"from": {"selector": {"role": "a"}}}),
               applied_to={"role": "c"}),
    ])  # fmt: skip
    v = verdict(st, "a", "b", "tcp/25")  # the sender's egress
    assert v.action == "deny" and v.steps[0].direction == "egress"
    assert verdict(st, "b", "a", "tcp/25").allowed  # a's ingress: the egress rule does not apply
    v = verdict(st, "a", "c", "udp/1")  # c's ingress, from a
    assert v.action == "reject" and v.step is not None and v.step.direction == "ingress"
    assert verdict(st, "b", "c", "udp/1").allowed


def test_both_sides_apply() -> None:
    st = model(
        security_groups=[group("b-in", rule(protocol="tcp", ports="80"), selector={"role": "b"})],
        policies=[policy("a-out", 1, rule("egress", action="deny", protocol="tcp"),
                         applied_to={"role": "a"})],
    )  # fmt: skip
    v = verdict(st, "a", "b", "tcp/80")  # b would take it; a may not send it
    assert v.action == "deny" and str(v.rule) == "policy a-out rule 0"
    v = verdict(st, "c", "b", "tcp/80")
    assert v.allowed and [s.direction for s in v.steps] == ["egress", "ingress"]


# -- services and their classes -------------------------------------------------------------------
def test_service_syntax() -> None:
    assert Service.parse("tcp/80") == Service("IPv4", 6, port=80)
    assert Service.parse("ipv6 udp/53") == Service("IPv6", 17, port=53)
    assert Service.parse("icmp") == Service("IPv4", 1, icmp_type=8, icmp_code=0)
    assert Service.parse("icmpv6") == Service("IPv6", 58, icmp_type=128, icmp_code=0)
    assert Service.parse("icmp/3/4") == Service("IPv4", 1, icmp_type=3, icmp_code=4)
    assert Service.parse("proto/47", "IPv6") == Service("IPv6", 47)
    assert str(Service("IPv4", 6, port=80)) == "tcp/80" and str(Service("IPv4", 47)) == "proto/47"
    for bad in ("tcp", "tcp/0", "tcp/70000", "sctp/1", "icmp/300", "ipv6 icmp/8", "", "tcp/1/2"):
        with pytest.raises(ValueError):
            Service.parse(bad)
    with pytest.raises(ValueError):
        Service("IPv4", 6)  # a port is needed
    with pytest.raises(ValueError):
        Service("IPv4", 47, port=1)


def test_service_classes_are_what_the_rules_tell_apart() -> None:
    rules = [GroupRule.model_validate(r) for r in (
        rule(protocol="tcp", ports="80"),
        rule(protocol="tcp", ports="8000-8080"),
        rule(protocol="tcp", ports="8080-9000"),
        rule(protocol="icmp", icmp_type=3, icmp_code=4),
        rule(protocol="icmp", icmp_type=8),
        rule(protocol=47),
        rule(protocol="udp", ethertype="IPv6"),
    )]  # fmt: skip
    sc = ServiceClasses(rules)
    v4 = [c.name for c in sc.all(["IPv4"])]
    assert v4 == [
        "icmp/3/4", "icmp/8", "icmp/other",
        "tcp/80", "tcp/8000-8079", "tcp/8080", "tcp/8081-9000", "tcp/other",
        "proto/47", "other",
    ]  # fmt: skip
    assert [c.name for c in sc.all(["IPv6"])] == [
        "tcp/80", "tcp/8000-8079", "tcp/8080", "tcp/8081-9000", "tcp/other",
        "udp", "proto/47", "icmpv6/nd", "other",
    ]  # fmt: skip
    assert sc.of(Service.parse("tcp/81")).name == "tcp/other"
    assert sc.of(Service.parse("icmp/3/3")).name == "icmp/other"
    assert sc.of(Service.parse("udp/53")).name == "other"  # no IPv4 rule names udp
    assert sc.of(Service.parse("ipv6 icmpv6/136")).name == "icmpv6/nd"
    for c in sc.all():
        assert sc.key(c.example) == c.key  # each class's example is one of its own
    # the catch-all's example is a protocol no rule names
    (other,) = (c for c in sc.all(["IPv4"]) if c.name == "other")
    assert other.example.protocol not in (1, 6, 47)


def test_ports_fall_into_classes() -> None:
    many = [{"name": f"w{i:02}", "tenant": "t", "network": "n", "labels": {"role": "w"},
             "fixed_ips": [{"ip": f"10.0.0.{100 + i}"}]} for i in range(12)]  # fmt: skip
    st = model(
        ports=many,
        security_groups=[group("g", rule(**{"from": {"cidr": "10.0.0.104/29"}}),
                               selector={"role": "w"})],
    )  # fmt: skip
    ev = Evaluator(st)
    classes = [[p.name for p in c.ports] for c in ev.classes(st.find("tenant", "t").id)]
    # the CIDR splits the workers: .104-.111 inside, .100-.103 outside
    assert [f"w{i:02}" for i in range(4, 12)] in classes
    assert [f"w{i:02}" for i in range(4)] in classes
    # a and b: no group, no selector tells them apart, both dual stack; c has no IPv6 address;
    # far is on another network
    assert ["a", "b"] in classes and ["c"] in classes and ["far"] in classes
    cells = matrix(st, families=["IPv4"])
    assert len({(c.src.key, c.dst.key) for c in cells}) < 16 * 16  # classes, not pairs


# -- what a change does ----------------------------------------------------------------------------
def test_delta_names_what_a_change_opens_and_closes() -> None:
    groups = [group("db", rule(protocol="tcp", ports="5432", **{"from": {"selector": {"role": "a"}}}),
                    selector={"role": "c"})]  # fmt: skip
    before = model(security_groups=groups)
    after = copy.deepcopy(BASE)
    after["security_groups"] = groups
    after["ports"][1]["labels"] = {"role": "a"}  # b becomes an "a"
    after["ports"][0]["labels"] = {"role": "x"}  # a stops being one
    nb = Northbound(SqliteStore())
    nb.apply({**BASE, "security_groups": groups})
    ids = {p.name: p.id for p in nb.state().all("port")}
    before = nb.state()
    nb.apply(after)
    assert {p.name: p.id for p in nb.state().all("port")} == ids
    changes = delta(before, nb.state())
    seen = {(r.opened, r.src, r.dst, r.service.name) for r in changes}
    assert seen == {
        (True, ("b",), ("c",), "tcp/5432"),
        (False, ("a",), ("c",), "tcp/5432"),
    }, seen
    assert delta(before, before) == []

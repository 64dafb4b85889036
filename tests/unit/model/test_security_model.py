"""Security groups and policies: fields checked alone, references, uniqueness, deletion, apply."""

from __future__ import annotations

from typing import Any

import pytest

from vnet.controller.northbound import Northbound
from vnet.model import Policy, Port, SecurityGroup
from vnet.model.secrules import GroupRule, PolicyRule
from vnet.store import SqliteStore

from .helpers import refused


@pytest.fixture
def nb() -> Northbound:
    n = Northbound(SqliteStore())
    for t in ("blue", "red"):
        n.create("tenant", {"name": t})
        n.create("network", {"name": "net", "tenant": t})
        n.create("subnet", {"name": "v4", "tenant": t, "network": "net", "cidr": "10.0.0.0/24"})
        n.create("subnet", {"name": "v6", "tenant": t, "network": "net", "cidr": "fd00::/64"})
        n.create("security_group", {"name": "web", "tenant": t, "selector": {"app": "web"}})
    return n


def rule(**kw: Any) -> dict[str, Any]:
    return {"direction": "ingress", **kw}


# -- one rule alone ------------------------------------------------------------------------------
def test_rule_normal_forms() -> None:
    r = GroupRule.model_validate(rule(protocol=6, ports=80, **{"from": {"cidr": "10.1.2.3"}}))
    assert (r.protocol, r.ports, r.port_range) == ("tcp", "80", (80, 80))
    assert r.remote is not None and r.remote.cidr == "10.1.2.3/32"
    assert r.ethertypes == ("IPv4",)  # from the remote CIDR
    assert GroupRule.model_validate(rule(protocol="UDP", ports="53 - 60")).ports == "53-60"
    assert GroupRule.model_validate(rule(protocol="47")).protocol_number == 47
    assert GroupRule.model_validate(rule(protocol=58)).protocol == "icmpv6"
    assert GroupRule.model_validate(rule()).ethertypes == ("IPv4", "IPv6")
    assert GroupRule.model_validate(rule(protocol="icmp")).ethertypes == ("IPv4",)
    e = GroupRule.model_validate({"direction": "egress", "to": {"group": "g"}})
    assert e.remote is not None and e.remote.group == "g" and e.from_ is None
    # the stored form says `from`, and gives only the remote's one kind
    dumped = GroupRule.model_validate(rule(**{"from": {"selector": {"a": "b"}}})).model_dump()
    assert dumped["from"] == {"selector": {"a": "b"}} and "from_" not in dumped
    p = PolicyRule.model_validate(rule(action="reject", log=True))
    assert p.action == "reject" and p.log


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        (rule(protocol="tcp", ports="0"), ("rules", 0, "ports"), "outside 1-65535"),
        (rule(protocol="tcp", ports="80-70000"), ("rules", 0, "ports"), "70000 is outside"),
        (rule(protocol="tcp", ports="90-80"), ("rules", 0, "ports"), "reversed"),
        (rule(protocol="tcp", ports="http"), ("rules", 0, "ports"), "one port or one range"),
        (rule(protocol="icmp", ports="80"), ("rules", 0, "ports"), "need protocol tcp or udp"),
        (rule(ports="80"), ("rules", 0, "ports"), "protocol is any"),
        (rule(protocol="tcp", icmp_type=8), ("rules", 0, "icmp_type"), "protocol is tcp"),
        (rule(protocol="udp", icmp_code=0), ("rules", 0, "icmp_code"), "protocol is udp"),
        (rule(protocol="icmp", icmp_code=0), ("rules", 0, "icmp_code"), "needs its icmp_type"),
        (rule(protocol="icmp", icmp_type=256), ("rules", 0, "icmp_type"), "255"),
        (rule(protocol="tcpp"), ("rules", 0, "protocol"), "tcp, udp, icmp"),
        (rule(protocol=256), ("rules", 0, "protocol"), "0-255"),
        (rule(protocol=True), ("rules", 0, "protocol"), "0-255"),
        (rule(ethertype="IPv6", protocol="icmp"), ("rules", 0, "protocol"), "icmpv6"),
        (rule(ethertype="IPv4", protocol="icmpv6"), ("rules", 0, "protocol"), "IPv6's"),
        (rule(ethertype="ipv4"), ("rules", 0, "ethertype"), "IPv4"),
        (rule(direction="inbound"), ("rules", 0, "direction"), "ingress"),
        (rule(ethertype="IPv6", **{"from": {"cidr": "10.0.0.0/8"}}), ("rules", 0, "from"),
         "IPv4 CIDR; the rule is IPv6 (ethertype)"),
        (rule(protocol="icmp", **{"from": {"cidr": "fd00::/8"}}), ("rules", 0, "from"),
         "IPv6 CIDR; the rule is IPv4 (protocol icmp)"),
        (rule(**{"from": {"cidr": "10.0.0.1/8"}}), ("rules", 0, "from", "cidr"), "host bits"),
        (rule(**{"from": {"cidr": "10.0.0.0/33"}}), ("rules", 0, "from", "cidr"), "CIDR"),
        (rule(**{"from": {"cidr": "10.0.0.0/8", "group": "x"}}), ("rules", 0, "from"), "one of"),
        (rule(**{"from": {}}), ("rules", 0, "from"), "one of"),
        (rule(**{"from": {"host": "x"}}), ("rules", 0, "from", "host"), "Extra inputs"),
        (rule(to={"cidr": "10.0.0.0/8"}), ("rules", 0, "to"), "names its remote in `from`"),
        ({"direction": "egress", "from": {"cidr": "10.0.0.0/8"}}, ("rules", 0, "from"), "in `to`"),
        (rule(**{"from": {"selector": {"bad key": "x"}}}), ("rules", 0, "from", "selector"),
         "label key 'bad key'"),
        (rule(**{"from": {"selector": {"a": "x" * 64}}}), ("rules", 0, "from", "selector", "a"),
         "63"),
        (rule(**{"from": {"selector": {"a": 1}}}), ("rules", 0, "from", "selector", "a"),
         "string"),
        (rule(action="allow"), ("rules", 0, "action"), "Extra inputs"),  # groups only allow
    ],
)  # fmt: skip
def test_a_bad_group_rule_is_refused_naming_the_field(
    body: dict[str, Any], loc: tuple[Any, ...], words: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as e:
        SecurityGroup.model_validate({"name": "g", "tenant": "t", "rules": [body]})
    first = e.value.errors()[0]
    assert first["loc"] == loc and words in first["msg"], first


@pytest.mark.parametrize(
    ("fields", "loc", "words"),
    [
        ({"selector": {"-x": "y"}}, ("selector",), "label key '-x'"),
        ({"selector": "app=web"}, ("selector",), "dictionary"),
        ({"applied_to": {"a b": "c"}}, ("applied_to",), "label key"),
        ({"priority": -1}, ("priority",), "greater than or equal"),
        ({"priority": 70000}, ("priority",), "less than or equal"),
        ({"rules": [rule()]}, ("rules", 0, "action"), "required"),
        ({"rules": [rule(action="drop")]}, ("rules", 0, "action"), "'allow', 'deny'"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_field(
    fields: dict[str, Any], loc: tuple[Any, ...], words: str
) -> None:
    from pydantic import ValidationError

    body = {"name": "p", "tenant": "t", "priority": 1, **fields}
    if "selector" in fields:
        body = {"name": "g", "tenant": "t", **fields}
    with pytest.raises(ValidationError) as e:
        (SecurityGroup if "selector" in fields else Policy).model_validate(body)
    first = e.value.errors()[0]
    assert first["loc"] == loc and words in first["msg"], first


# -- against the model ---------------------------------------------------------------------------
def test_a_port_lists_groups_by_name_and_they_are_stored_as_ids(nb: Northbound) -> None:
    nb.create("security_group", {"name": "db", "tenant": "blue"})
    p = nb.create("port", {"name": "vm", "tenant": "blue", "network": "net",
                           "security_groups": ["db", "web"]})  # fmt: skip
    assert isinstance(p, Port)
    ids = {g.name: g.id for g in nb.list("security_group", tenant="blue")}
    assert p.security_groups == [ids["db"], ids["web"]]
    # re-applying the same names is no change
    same = nb.update("port", "vm", {"security_groups": ["db", "web"]}, tenant="blue")
    assert same.revision == p.revision


@pytest.mark.parametrize(
    ("kind", "body", "status", "loc", "words"),
    [
        ("port", {"security_groups": ["nope"]}, "invalid", ("security_groups", 0), "no security group 'nope'"),
        ("port", {"security_groups": ["web", "web"]}, "invalid", ("security_groups", 1), "listed twice"),
        ("security_group", {"rules": [rule(**{"from": {"group": "nope"}})]}, "invalid",
         ("rules", 0, "from", "group"), "no security group 'nope' in tenant 'blue'"),
        ("policy", {"priority": 5, "rules": [rule(action="deny", **{"from": {"group": "nope"}})]},
         "invalid", ("rules", 0, "from", "group"), "no security group 'nope'"),
        ("policy", {"priority": 5, "tenant": "nope"}, "invalid", ("tenant",), "no tenant 'nope'"),
        ("security_group", {"name": "web"}, "conflict", ("name",), "exists"),
        ("policy", {"priority": 10}, "conflict", ("priority",), "priority 10 is policy 'first'"),
    ],
)  # fmt: skip
def test_bad_references_and_duplicates_are_refused_whole(
    nb: Northbound,
    kind: str,
    body: dict[str, Any],
    status: str,
    loc: tuple[Any, ...],
    words: str,
) -> None:
    nb.create("policy", {"name": "first", "tenant": "blue", "priority": 10})
    base: dict[str, Any] = {"name": "x", "tenant": "blue"}
    if kind == "port":
        base["network"] = "net"
    e = refused(nb, nb.create, kind, {**base, **body})
    assert (e.status, e.loc) == (status, loc) and words in e.message, e


def test_nothing_crosses_tenants(nb: Northbound) -> None:
    red_web = nb.get("security_group", "web", tenant="red").id
    e = refused(nb, nb.create, "port", {"name": "x", "tenant": "blue", "network": "net",
                                        "security_groups": [red_web]})  # fmt: skip
    assert e.loc == ("security_groups", 0) and "tenant 'red'" in e.message
    for kind, extra in (("security_group", {}), ("policy", {"priority": 1})):
        body = {"name": "x", "tenant": "blue", **extra,
                "rules": [rule(action="allow", **{"from": {"group": red_web}})]}  # fmt: skip
        if kind == "security_group":
            del body["rules"][0]["action"]
        e = refused(nb, nb.create, kind, body)
        assert e.loc == ("rules", 0, "from", "group") and "tenant 'red'" in e.message, e
    # by name, a group is looked up in the object's own tenant only
    nb.create("security_group", {"name": "only-red", "tenant": "red"})
    e = refused(nb, nb.create, "security_group", {"name": "x", "tenant": "blue",
                "rules": [rule(**{"from": {"group": "only-red"}})]})  # fmt: skip
    assert "no security group 'only-red' in tenant 'blue'" in e.message
    # and nothing moves to another tenant
    e = refused(nb, nb.update, "security_group", "web", {"tenant": "red"}, tenant="blue")
    assert e.loc == ("tenant",)
    # one priority may be used in each tenant
    nb.create("policy", {"name": "p", "tenant": "blue", "priority": 7})
    nb.create("policy", {"name": "p", "tenant": "red", "priority": 7})


def test_a_group_may_name_itself(nb: Northbound) -> None:
    g = nb.create("security_group", {"name": "mesh", "tenant": "blue", "selector": {"m": "1"},
                                     "rules": [rule(**{"from": {"group": "mesh"}})]})  # fmt: skip
    assert isinstance(g, SecurityGroup) and g.rules[0].from_ is not None
    assert g.rules[0].from_.group == g.id
    renamed = nb.update("security_group", "mesh", {"name": "mesh2"}, tenant="blue")
    assert isinstance(renamed, SecurityGroup) and renamed.rules[0].from_ == g.rules[0].from_
    nb.delete("security_group", "mesh2", tenant="blue")  # its own rules do not hold it


def test_deleting_a_group_names_who_refers_to_it(nb: Northbound) -> None:
    nb.create(
        "port", {"name": "vm", "tenant": "blue", "network": "net", "security_groups": ["web"]}
    )
    e = refused(nb, nb.delete, "security_group", "web", tenant="blue")
    assert "ports that list it: vm" in e.message and e.status == "conflict"
    nb.create("security_group", {"name": "db", "tenant": "blue",
                                 "rules": [rule(**{"from": {"group": "web"}})]})  # fmt: skip
    nb.create("policy", {"name": "pol", "tenant": "blue", "priority": 1,
              "rules": [{"direction": "egress", "action": "deny", "to": {"group": "web"}}]})  # fmt: skip
    e = refused(nb, nb.delete, "security_group", "web", tenant="blue", cascade=True)
    assert "security group 'db' rule 0" in e.message and "policy 'pol' rule 0" in e.message
    nb.delete("policy", "pol", tenant="blue")
    nb.delete("security_group", "db", tenant="blue")
    nb.delete("security_group", "web", tenant="blue", cascade=True)  # off the port
    vm = nb.get("port", "vm", tenant="blue")
    assert isinstance(vm, Port) and vm.security_groups == []


def test_a_tenant_goes_with_its_groups_and_policies_only_when_cascading(nb: Northbound) -> None:
    nb.delete("network", "net", tenant="red", cascade=True)
    nb.create("policy", {"name": "p", "tenant": "red", "priority": 1})
    e = refused(nb, nb.delete, "tenant", "red")
    assert "security groups: web" in e.message
    nb.delete("security_group", "web", tenant="red")
    e = refused(nb, nb.delete, "tenant", "red")
    assert "policies: p" in e.message
    nb.delete("tenant", "blue", cascade=True)
    assert [g.name for g in nb.list("security_group")] == []
    assert nb.list("port") == [] and [t.name for t in nb.list("tenant")] == ["red"]


FILE: dict[str, Any] = {
    "tenants": [{"name": "t"}],
    "networks": [{"name": "n", "tenant": "t"}],
    "subnets": [{"name": "s", "tenant": "t", "network": "n", "cidr": "10.0.0.0/24"}],
    "policies": [  # before the groups in the file: the order of kinds in a file does not matter
        {"name": "guard", "tenant": "t", "priority": 100, "applied_to": {"tier": "db"},
         "rules": [{"action": "allow", "direction": "ingress", "protocol": "tcp",
                    "ports": "5432", "from": {"group": "app"}},
                   {"action": "reject", "direction": "ingress"}]},
    ],
    "security_groups": [  # each names the other, the first before the second is defined
        {"name": "app", "tenant": "t", "selector": {"tier": "app"},
         "rules": [{"direction": "ingress", "from": {"group": "db"}}]},
        {"name": "db", "tenant": "t", "rules": [{"direction": "ingress", "from": {"group": "app"}}]},
    ],
    "ports": [
        {"name": "a", "tenant": "t", "network": "n", "labels": {"tier": "app"}},
        {"name": "d", "tenant": "t", "network": "n", "labels": {"tier": "db"},
         "security_groups": ["db"]},
    ],
}  # fmt: skip


def test_a_file_with_groups_ports_and_policies_applies_and_reapplies_as_nothing() -> None:
    nb = Northbound(SqliteStore())
    diffs = nb.apply(FILE)
    assert [(d.kind, d.action) for d in diffs][-5:] == [
        ("security_group", "create"),
        ("security_group", "create"),
        ("port", "create"),
        ("port", "create"),
        ("policy", "create"),
    ]
    st = nb.state()
    ids = {g.name: g.id for g in st.all("security_group")}
    app = nb.get("security_group", "app")
    assert isinstance(app, SecurityGroup) and app.rules[0].from_ is not None
    assert app.rules[0].from_.group == ids["db"]
    assert nb.plan(FILE) == []
    # a change of one rule is one update, shown field by field
    doc = {**FILE, "policies": [{**FILE["policies"][0], "priority": 50}]}
    (d,) = nb.plan(doc)
    assert (d.kind, d.action, d.fields()) == ("policy", "update", {"priority": (100, 50)})
    # a file that drops a group a port still lists is refused, naming the port's field
    bad = {**FILE, "security_groups": FILE["security_groups"][:1]}
    bad["security_groups"] = [{**bad["security_groups"][0], "rules": []}]
    e = refused(nb, nb.apply, bad)
    assert e.loc == ("ports", 1, "security_groups", 0), e
    # one name twice in a file
    twice = {**FILE, "security_groups": [*FILE["security_groups"], FILE["security_groups"][1]]}
    e = refused(nb, nb.apply, twice)
    assert e.loc == ("security_groups", 2, "name") and "given twice" in e.message
    # two policies with one priority in a file
    two = {**FILE, "policies": [*FILE["policies"], {**FILE["policies"][0], "name": "other"}]}
    e = refused(nb, nb.apply, two)
    assert e.loc == ("policies", 1, "priority") and "policy 'guard'" in e.message
    # dropping the group and its users in one file is one consistent change
    gone = {**FILE, "policies": [], "ports": FILE["ports"][:1]}
    gone["security_groups"] = [{**FILE["security_groups"][0], "rules": []}]
    kinds = {(d.kind, d.action) for d in nb.plan(gone)}
    assert ("security_group", "delete") in kinds and ("policy", "delete") in kinds
    nb.apply(gone)
    assert [g.name for g in nb.list("security_group")] == ["app"]

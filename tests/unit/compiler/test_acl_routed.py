"""The firewall across a router: group and selector rules follow the workload to another subnet.

web1 (network web) and db1 (network db) behind router r1; client on web and
other on db are in neither group.  A routed frame enters the destination's
network from the router's port, so the other end of each side's rules is
found by its address -- the sender's egress rules by the destination's, the
receiver's ingress rules by the source's.  The model goes through admission
(router ports' MACs and keys); the flows run on in-process switches joined by
the simulated underlay (`lab.verify.Rig`).
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3_parser as parser
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from vnet.compiler import Compiler, localize
from vnet.compiler.stages import stage_of
from vnet.controller.northbound import Northbound
from vnet.lab.verify import Rig, check
from vnet.model.objects import Router, tunnel_iface
from vnet.model.rules import State
from vnet.ofp.convert import DP, check_flow, flow_from_ofp, flow_mod_to_ofp
from vnet.pipeline.fields import lookup
from vnet.store import SqliteStore

BASE: dict[str, Any] = {
    "tenants": [{"name": "shop"}],
    "chassis": [{"name": "hv1", "underlay": "192.0.2.1"}, {"name": "hv2", "underlay": "192.0.2.2"}],
    "networks": [{"name": "web", "tenant": "shop"}, {"name": "db", "tenant": "shop"}],
    "subnets": [
        {"name": "web-v4", "tenant": "shop", "network": "web", "cidr": "10.1.0.0/24"},
        {"name": "web-v6", "tenant": "shop", "network": "web", "cidr": "fd00:1::/64"},
        {"name": "db-v4", "tenant": "shop", "network": "db", "cidr": "10.2.0.0/24"},
        {"name": "db-v6", "tenant": "shop", "network": "db", "cidr": "fd00:2::/64"},
    ],
    "routers": [
        {
            "name": "r1",
            "tenant": "shop",
            "interfaces": [{"subnet": s} for s in ("web-v4", "web-v6", "db-v4", "db-v6")],
        }
    ],
    "ports": [
        {"name": "web1", "tenant": "shop", "network": "web", "chassis": "hv1",
         "labels": {"tier": "web"}, "fixed_ips": [{"ip": "10.1.0.11"}, {"ip": "fd00:1::11"}]},
        {"name": "client", "tenant": "shop", "network": "web", "chassis": "hv1",
         "labels": {"tier": "client"}, "fixed_ips": [{"ip": "10.1.0.12"}, {"ip": "fd00:1::12"}]},
        {"name": "db1", "tenant": "shop", "network": "db", "chassis": "hv2",
         "labels": {"tier": "db"}, "fixed_ips": [{"ip": "10.2.0.11"}, {"ip": "fd00:2::11"}]},
        {"name": "other", "tenant": "shop", "network": "db", "chassis": "hv2",
         "labels": {"tier": "other"}, "fixed_ips": [{"ip": "10.2.0.12"}, {"ip": "fd00:2::12"}]},
    ],
}  # fmt: skip

# the receiver's ingress rule: db takes tcp/5432 from web (by group or by selector), only
WEB = {"name": "web", "tenant": "shop", "selector": {"tier": "web"}}
BY_GROUP = [WEB, {"name": "db", "tenant": "shop", "selector": {"tier": "db"}, "rules": [
    {"direction": "ingress", "protocol": "tcp", "ports": "5432", "from": {"group": "web"}}]}]  # fmt: skip
BY_SELECTOR = [{"name": "db", "tenant": "shop", "selector": {"tier": "db"}, "rules": [
    {"direction": "ingress", "protocol": "tcp", "ports": "5432",
     "from": {"selector": {"tier": "web"}}}]}]  # fmt: skip
# the sender's egress rule: web may open tcp/5432 to db only (db itself in no group)
EGRESS = [{**WEB, "rules": [
    {"direction": "egress", "protocol": "tcp", "ports": "5432", "to": {"selector": {"tier": "db"}}}]}]  # fmt: skip


def model(groups: list[dict[str, Any]], encap: str = "geneve", where: str = "two") -> State:
    doc = copy.deepcopy(BASE)
    doc["security_groups"] = copy.deepcopy(groups)
    doc["chassis"][1]["encap"] = encap
    if where == "one":
        for p in doc["ports"]:
            p["chassis"] = "hv1"
    nb = Northbound(SqliteStore())
    nb.apply(doc)
    return nb.state()


class Routed:
    """The rig, and frames from one port to another through the routers."""

    def __init__(self, state: State) -> None:
        self.state, self.rig = state, Rig(state)
        self.ports = {p.name: p for p in state.all("port")}
        routers = [r for r in state.all("router") if isinstance(r, Router)]
        subnets = {s.id: s for s in state.all("subnet")}
        # (network id, family) -> the router's MAC there
        self.gw = {(subnets[i.subnet].network, subnets[i.subnet].ip_version): i.mac
                   for r in routers for i in r.interfaces}  # fmt: skip

    def addr(self, name: str, v6: bool) -> str:
        return next(a for a in self.ports[name].ips if (":" in a) == v6)

    def tcp(self, src: str, dst: str, dport: int, flags: str = "S", sport: int = 40000,
            v6: bool = False) -> set[str]:  # fmt: skip
        """A TCP segment from `src` to `dst`'s address, sent to `src`'s gateway: the names
        of the ports it reached (with the routed frame checked on the way)."""
        a, b = self.ports[src], self.ports[dst]
        assert a.mac and b.mac
        ip = IPv6 if v6 else IP
        seg = TCP(sport=sport, dport=dport, flags=flags, seq=5000 if "A" in flags else 1000,
                  ack=1001 if "A" in flags else 0)  # fmt: skip
        frame = (
            Ether(src=a.mac, dst=self.gw[(a.network, 6 if v6 else 4)])
            / ip(src=self.addr(src, v6), dst=self.addr(dst, v6))
            / seg
        )
        got = self.rig.send(a, bytes(frame))
        names = {p.id: p.name for p in self.ports.values()}
        for frames in got.values():
            for f in frames:  # routed: from the router's MAC, TTL down by one
                e = Ether(f)
                assert e.src == self.gw[(b.network, 6 if v6 else 4)] and e.dst == b.mac
                assert (e[IPv6].hlim if v6 else e[IP].ttl) == 63
        return {names[pid] for pid in got}

    def connect(self, src: str, dst: str, port: int, v6: bool = False) -> tuple[bool, bool]:
        """A SYN from `src` to `dst` on `port` (fresh tables), then the SYN/ACK back:
        (the SYN reached `dst`, the SYN/ACK reached `src`)."""
        self.rig.reset()
        there = self.tcp(src, dst, port, v6=v6) == {dst}
        back = self.tcp(dst, src, 40000, "SA", sport=port, v6=v6) == {src}
        return there, back


PLACES = [("geneve", "two"), ("vxlan", "two"), ("geneve", "one")]
IDS = ["two chassis, geneve", "two chassis, vxlan", "one chassis"]


@pytest.mark.parametrize("v6", [False, True], ids=["IPv4", "IPv6"])
@pytest.mark.parametrize(("encap", "where"), PLACES, ids=IDS)
@pytest.mark.parametrize("groups", [BY_GROUP, BY_SELECTOR], ids=["from group", "from selector"])
def test_the_receivers_ingress_rule_knows_the_routed_sender(
    groups: list[dict[str, Any]], encap: str, where: str, v6: bool
) -> None:
    r = Routed(model(groups, encap, where))
    assert r.connect("web1", "db1", 5432, v6) == (True, True)  # allowed, the reply passes
    assert r.connect("client", "db1", 5432, v6) == (False, False)  # not in web: refused
    assert r.connect("web1", "db1", 22, v6) == (False, False)  # another service: refused
    # the reverse is web1's ingress to decide: default-deny as a member of web (which
    # has no rule), open when web1 is in no group (the selector's case)
    back = r.connect("db1", "web1", 5432, v6)
    assert back == ((False, False) if groups is BY_GROUP else (True, True))


@pytest.mark.parametrize("v6", [False, True], ids=["IPv4", "IPv6"])
@pytest.mark.parametrize(("encap", "where"), PLACES, ids=IDS)
def test_the_senders_egress_rule_knows_the_routed_receiver(
    encap: str, where: str, v6: bool
) -> None:
    r = Routed(model(EGRESS, encap, where))
    assert r.connect("web1", "db1", 5432, v6) == (True, True)
    assert r.connect("web1", "other", 5432, v6) == (False, False)  # not db: refused
    assert r.connect("web1", "db1", 22, v6) == (False, False)
    assert r.connect("client", "other", 22, v6) == (True, True)  # client has no rules


def pairs(web1: list[str]) -> Routed:
    doc = copy.deepcopy(BASE)
    doc["security_groups"] = copy.deepcopy(BY_GROUP)
    doc["ports"][0]["allowed_address_pairs"] = [{"ip": ip} for ip in web1]
    nb = Northbound(SqliteStore())
    nb.apply(doc)
    return Routed(nb.state())


def test_an_address_pair_is_its_ports_but_never_over_another_ports_own_address() -> None:
    # web1 may also send from 10.1.0.0/28, which holds client's 10.1.0.12 (client is in
    # no group: its address is still its own)
    r = pairs(["10.1.0.0/28"])
    assert r.connect("web1", "db1", 5432) == (True, True)
    assert r.connect("client", "db1", 5432) == (False, False)
    r.rig.reset()
    assert _from(r, "web1", "10.1.0.5", "db1", 5432) == {"db1"}  # from its pair: web1's


def test_of_one_length_a_ports_own_address_comes_before_an_address_pair() -> None:
    r = pairs(["10.1.0.12/32"])  # client's address, as web1's pair
    assert r.connect("client", "db1", 5432) == (False, False)
    assert r.connect("web1", "db1", 5432) == (True, True)


def _from(r: Routed, src: str, ip: str, dst: str, dport: int) -> set[str]:
    a = r.ports[src]
    assert a.mac
    frame = (
        Ether(src=a.mac, dst=r.gw[(a.network, 4)])
        / IP(src=ip, dst=r.addr(dst, False))
        / TCP(sport=40000, dport=dport, flags="S")
    )
    got = r.rig.send(a, bytes(frame))
    names = {p.id: p.name for p in r.ports.values()}
    return {names[pid] for pid in got}


def test_another_routing_domains_same_addresses_are_not_the_other_end() -> None:
    """A second router of the tenant with its own networks on the same chassis, the
    same subnets: a port there with web1's address is not web1."""
    doc = copy.deepcopy(BASE)
    doc["security_groups"] = copy.deepcopy(BY_GROUP)
    doc["networks"] += [{"name": "web2", "tenant": "shop"}, {"name": "db2", "tenant": "shop"}]
    doc["subnets"] += [
        {"name": "web2-v4", "tenant": "shop", "network": "web2", "cidr": "10.1.0.0/24"},
        {"name": "db2-v4", "tenant": "shop", "network": "db2", "cidr": "10.2.0.0/24"},
    ]
    doc["routers"].append(
        {
            "name": "r2",
            "tenant": "shop",
            "interfaces": [{"subnet": "web2-v4"}, {"subnet": "db2-v4"}],
        }
    )
    doc["ports"] += [
        {"name": "web2", "tenant": "shop", "network": "web2", "chassis": "hv1",
         "labels": {"tier": "client"}, "fixed_ips": [{"ip": "10.1.0.11"}]},
        {"name": "db2", "tenant": "shop", "network": "db2", "chassis": "hv2",
         "labels": {"tier": "db"}, "fixed_ips": [{"ip": "10.2.0.11"}]},
    ]  # fmt: skip
    nb = Northbound(SqliteStore())
    nb.apply(doc)
    r = Routed(nb.state())
    r.rig.reset()
    assert r.tcp("web1", "db1", 5432) == {"db1"}
    r.rig.reset()
    assert r.tcp("web2", "db2", 5432) == set()  # web2 has web1's address, not its groups


def test_one_flow_per_address_where_the_network_is_and_in_no_datapath() -> None:
    st = model(BY_GROUP)
    lflows = Compiler().compile(st)
    by_addr = [lf for lf in lflows if "by its address" in lf.rule and "routed" in lf.rule]
    # web1, client, db1, other: two addresses each, one flow for either end
    assert len(by_addr) == 4 * 2
    assert {lf.datapath for lf in by_addr} == {n.id for n in st.all("network")}
    # each chassis gets them, with no datapath key in their match: the lookup happens in
    # the other network's pipeline
    metadata = lookup("metadata").index
    for ch in st.all("chassis"):
        ofports = {p.iface: i for i, p in enumerate(st.all("port"), 1)}
        ofports |= {tunnel_iface("geneve"): 99}
        flows = localize(lflows, st, ch, ofports)
        mine = [f for f in flows if "routed" in f.origin and "by its address" in f.origin]
        assert len(mine) == len(by_addr)
        assert all(slot != metadata for f in mine for slot, _, _ in f.match.items)


def test_verify_still_agrees_on_a_routed_model() -> None:
    for groups in (BY_GROUP, EGRESS):
        assert check(model(groups)).disagreements == []


def test_a_port_on_no_routed_network_has_no_address_flows() -> None:
    doc = copy.deepcopy(BASE)
    doc["security_groups"] = copy.deepcopy(BY_GROUP)
    doc["networks"].append({"name": "spare", "tenant": "shop"})
    doc["subnets"].append({"name": "spare-v4", "tenant": "shop", "network": "spare",
                           "cidr": "10.3.0.0/24"})  # fmt: skip
    doc["ports"].append({"name": "lone", "tenant": "shop", "network": "spare", "chassis": "hv1",
                         "labels": {"tier": "web"}, "fixed_ips": [{"ip": "10.3.0.11"}]})  # fmt: skip
    nb = Northbound(SqliteStore())
    nb.apply(doc)
    lflows = Compiler().compile(nb.state())
    routed = [lf for lf in lflows if "by its address" in lf.rule and "routed" in lf.rule]
    assert len(routed) == 4 * 2 and not [lf for lf in routed if "lone" in lf.flow.origin]
    doc["routers"] = []  # no router: no lookup by address at all
    nb = Northbound(SqliteStore())
    nb.apply(doc)
    assert not [lf for lf in Compiler().compile(nb.state()) if "routed" in lf.rule]


def test_the_firewalls_routed_flows_cross_the_openflow_codec_unchanged() -> None:
    """What an Open vSwitch chassis is sent: the lookups past a router port (a partial
    move of an IPv6 address, the lookup table resubmitting to itself) byte for byte
    through os-ken and back, none its switch would refuse."""
    st = model(BY_GROUP, "vxlan")
    lflows = Compiler().compile(st)
    for ch in st.all("chassis"):
        ofports = {p.iface: i for i, p in enumerate(st.all("port"), 1)}
        ofports |= {tunnel_iface(k): 90 + i for i, k in enumerate(("geneve", "vxlan"))}
        mine = [f for f in localize(lflows, st, ch, ofports) if stage_of(f.table).startswith(
            ("ls_in_acl", "ls_out_acl", "ls_in_pre_acl", "ls_out_pre_acl"))]  # fmt: skip
        assert any("routed" in f.origin for f in mine)
        for f in mine:
            msg = flow_mod_to_ofp(f)
            msg.serialize()
            wire = bytes(msg.buf)
            back = flow_from_ofp(parser.OFPFlowMod.parser(DP, 4, 14, len(wire), 0, wire))
            check_flow(back, msg)
            assert replace(back, origin=f.origin) == f, f.origin


def test_relabelling_a_routed_port_changes_what_its_address_is_across_the_router() -> None:
    nb = Northbound(SqliteStore())
    doc = copy.deepcopy(BASE)
    doc["security_groups"] = copy.deepcopy(BY_GROUP)
    nb.apply(doc)
    r = Routed(nb.state())
    assert r.connect("client", "db1", 5432) == (False, False)
    nb.update("port", "client", {"labels": {"tier": "web"}}, tenant="shop")
    r.rig.install(nb.state())  # the rig's compiler: the incremental path
    assert r.rig.compiler.recompiled < 10
    assert r.connect("client", "db1", 5432) == (True, True)

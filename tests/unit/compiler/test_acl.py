"""The firewall's compiled flows, run by the real pipeline against the verdicts the model intends."""

from __future__ import annotations

import copy
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from vnet.compiler import Compiler, logical
from vnet.compiler.acl import LOG_METER, Punt, punts
from vnet.controller.northbound import Northbound
from vnet.lab.verify import Rig, check, verify
from vnet.model.policy import Service
from vnet.model.rules import State
from vnet.packet import ethernet, icmpv6, ipv4, ipv6, tcp, udp
from vnet.packet.addr import mac_int
from vnet.store import SqliteStore

ROOT = Path(__file__).resolve().parents[3]
MICROSEG: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "microseg.yaml").read_text())


def state_of(doc: dict[str, Any]) -> State:
    nb = Northbound(SqliteStore())
    nb.apply(doc)
    return nb.state()


def ports(state: State) -> dict[str, Any]:
    return {p.name: p for p in state.all("port")}


def test_punts_name_the_rule_the_port_and_the_side() -> None:
    st = state_of(MICROSEG)
    lflows = Compiler().compile(st)
    got = punts(lflows)
    db = ports(st)["db"]
    want = Punt("reject", "policy protect-db rule 0", True, "ingress", "db")
    assert set(got.values()) == {want}
    # every flow that sends to the controller has a punt, and its cookie is the port's
    for lf in lflows:
        if "CONTROLLER" in str(lf.flow.instructions.apply):
            assert got[lf.flow.cookie] == want
            assert lf.flow.cookie >> 32 == zlib.crc32(db.id.encode())


def test_a_logged_deny_is_metered_and_a_logged_allow_forks_a_copy() -> None:
    doc = copy.deepcopy(MICROSEG)
    doc["policies"][0]["rules"] = [
        {
            "action": "allow",
            "direction": "ingress",
            "protocol": "tcp",
            "ports": "5432",
            "from": {"selector": {"tier": "web"}},
            "log": True,
        },
        {"action": "deny", "direction": "ingress", "protocol": "tcp", "log": True},
    ]
    st = state_of(doc)
    lflows = Compiler().compile(st)
    by = {p.action: (c, p) for c, p in punts(lflows).items()}
    assert set(by) == {"allow", "deny"} and all(p.port == "db" for _, p in by.values())
    for cookie, _ in by.values():
        sent = [lf.flow for lf in lflows if lf.flow.cookie == cookie]
        assert sent and all(f.instructions.meter == LOG_METER.meter_id for f in sent)
    rig = Rig(st)
    p = ports(st)
    assert rig.probe(p["web"], p["db"], Service("IPv4", 6, port=5432)).action == "allow"
    assert [pi.cookie for pi in rig.packet_ins] == [by["allow"][0]]
    assert rig.probe(p["client"], p["db"], Service("IPv4", 6, port=5432)).action == "deny"
    assert [pi.cookie for pi in rig.packet_ins] == [by["deny"][0]]


def test_the_microseg_example_does_what_the_model_intends() -> None:
    st = state_of(MICROSEG)
    report = check(st)
    assert report.disagreements == []
    actions = {o.action for _, o in report.cells}
    assert actions == {"allow", "deny", "reject"}
    assert all(o.reply for _, o in report.cells if o.action == "allow")


def test_verify_sees_flows_that_do_not_enforce(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logical, "_FEATURES", [])  # compiled without the firewall
    found = verify(state_of(MICROSEG))
    assert any(d.src == "client" and d.dst == "db" and "tcp/5432" in d.service for d in found)


def test_replies_pass_and_the_reverse_is_denied() -> None:
    st = state_of(MICROSEG)
    rig, p = Rig(st), ports(st)
    out = rig.probe(p["web"], p["db"], Service("IPv4", 6, port=5432))
    assert out.action == "allow" and out.reply is True
    assert rig.probe(p["db"], p["web"], Service("IPv4", 6, port=40000)).action == "deny"
    # a SYN/ACK nobody asked for is no reply: not established, so the rules deny it
    rig.reset()
    syn_ack = tcp.build(
        5432, 40000, flags=0x12, seq=1, ack=1001, ip_src=_ip(p["db"]), ip_dst=_ip(p["web"])
    )
    assert p["web"].id not in rig.send(p["db"], _frame(p["db"], p["web"], 6, syn_ack))


def _ip(port: Any, v6: bool = False) -> int:
    import ipaddress

    return int(next(ipaddress.ip_address(a) for a in port.ips if (":" in a) == v6))


def _frame(
    a: Any, b: Any, proto: int, body: bytes, v6: bool = False, dst: int | None = None
) -> bytes:
    ip = (ipv6 if v6 else ipv4).build(_ip(a, v6), _ip(b, v6) if dst is None else dst, proto, body)
    return ethernet.build(mac_int(b.mac), mac_int(a.mac), 0x86DD if v6 else 0x0800, ip)


DUAL: dict[str, Any] = {
    **copy.deepcopy(MICROSEG),
    # dhcp off: a DHCP server of the tenant's own, so requests cross the network (and
    # the firewall) instead of going to the controller
    "subnets": [{**s, "dhcp": False} for s in MICROSEG["subnets"]]
    + [{"name": "app-v6", "tenant": "shop", "network": "app", "cidr": "fd20::/64"}],
    "ports": [
        {
            **p,
            "fixed_ips": [
                *p["fixed_ips"],
                {"ip": "fd20::" + p["fixed_ips"][0]["ip"].split(".")[-1]},
            ],
        }
        for p in MICROSEG["ports"]
    ],
}


def test_dhcp_and_neighbour_discovery_are_never_filtered() -> None:
    st = state_of(DUAL)
    rig, p = Rig(st), ports(st)
    web, client = p["web"], p["client"]
    bcast = (1 << 48) - 1
    # a DHCP request from web, broadcast: reaches client, whose ingress is default-deny
    body = udp.build(68, 67, b"\x01" * 240, ip_src=_ip(web), ip_dst=0xFFFFFFFF)
    frame = ethernet.build(
        bcast, mac_int(web.mac), 0x0800, ipv4.build(_ip(web), 0xFFFFFFFF, 17, body)
    )
    assert client.id in rig.send(web, frame)
    # the same datagram to another UDP port is filtered
    body = udp.build(68, 69, b"\x01" * 240, ip_src=_ip(web), ip_dst=0xFFFFFFFF)
    frame = ethernet.build(
        bcast, mac_int(web.mac), 0x0800, ipv4.build(_ip(web), 0xFFFFFFFF, 17, body)
    )
    assert client.id not in rig.send(web, frame)
    # a neighbour solicitation without a source link-layer address goes to the owner
    target = _ip(client, v6=True)
    sn = 0xFF02 << 112 | 1 << 32 | 0xFF << 24 | (target & 0xFFFFFF)
    ns = icmpv6.build_ns(_ip(web, True), sn, target)
    frame = ethernet.build(
        0x3333 << 32 | (sn & 0xFFFFFFFF),
        mac_int(web.mac),
        0x86DD,
        ipv6.build(_ip(web, True), sn, 58, ns, hop_limit=255),
    )
    assert client.id in rig.send(web, frame)
    # its advertisement back, unicast
    na = icmpv6.build_na(target, _ip(web, True), target)
    frame = ethernet.build(
        mac_int(web.mac),
        mac_int(client.mac),
        0x86DD,
        ipv6.build(target, _ip(web, True), 58, na, hop_limit=255),
    )
    assert web.id in rig.send(client, frame)
    # but an echo request from web to client over IPv6 is denied
    assert rig.probe(web, client, Service("IPv6", 58, icmp_type=128)).action == "deny"
    assert check(st).disagreements == []


TWO_TENANTS: dict[str, Any] = {
    "tenants": [{"name": "blue"}, {"name": "red"}],
    "chassis": [
        {"name": "hv1", "underlay": "192.0.2.1"},
        {"name": "hv2", "underlay": "192.0.2.2", "encap": "vxlan"},
    ],
    "networks": [{"name": "net", "tenant": t} for t in ("blue", "red")],
    "subnets": [
        {"name": "s", "tenant": t, "network": "net", "cidr": "10.0.0.0/24"} for t in ("blue", "red")
    ],
    "security_groups": [
        {
            "name": "open",
            "tenant": t,
            "selector": {},
            "rules": [{"direction": "ingress", "protocol": "tcp", "ports": "80"}],
        }
        for t in ("blue", "red")
    ],
    "policies": [
        {
            "name": "no-ssh",
            "tenant": "blue",
            "priority": 1,
            "applied_to": {"role": "a"},
            "rules": [
                {"action": "deny", "direction": "egress", "protocol": "tcp", "ports": "22"},
                {"action": "pass", "direction": "egress", "protocol": "tcp", "ports": "80-81"},
                {"action": "allow", "direction": "egress", "protocol": "tcp"},
            ],
        },
    ],
    "ports": [
        {
            "name": f"{t}{i}",
            "tenant": t,
            "network": "net",
            "chassis": f"hv{i}",
            "labels": {"role": "a" if i == 1 else "b"},
            "fixed_ips": [{"ip": f"10.0.0.{10 + i}"}],
        }
        for t in ("blue", "red")
        for i in (1, 2)
    ],
}


def test_across_chassis_and_tunnels_and_never_across_tenants() -> None:
    st = state_of(TWO_TENANTS)
    report = check(st)
    assert report.disagreements == []
    assert any(o.action == "allow" for _, o in report.cells)
    rig, p = Rig(st), ports(st)
    # blue1 -> red2's MAC and address: reaches nothing (a VXLAN chassis in between)
    out = rig.probe(p["blue1"], p["red2"], Service("IPv4", 6, port=80))
    assert out.reached == ()


def test_relabelling_a_port_changes_only_its_membership_flows() -> None:
    doc = copy.deepcopy(MICROSEG)
    nb = Northbound(SqliteStore())
    nb.apply(doc)
    comp = Compiler()
    before = comp.compile(nb.state())
    web = ports(nb.state())["web"]
    nb.update("port", web.id, {"labels": {"tier": "client"}})
    after = comp.compile(nb.state())
    old = {(lf.flow, lf.flow.cookie) for lf in before}
    new = {(lf.flow, lf.flow.cookie) for lf in after}
    changed = [lf for lf in before + after if (lf.flow, lf.flow.cookie) not in (old & new)]
    assert changed
    assert {lf.owner for lf in changed} == {("port", web.id)}
    stages = {lf.flow.origin.split(" · ")[1] for lf in changed}
    assert stages <= {
        "ls_in_acl_bits",
        "ls_in_pre_acl",
        "ls_out_pre_acl",
        "ls_in_acl_peer",
        "ls_out_acl_peer",
        "ls_in_acl",
        "ls_out_acl",
    }
    assert comp.recompiled == 1  # the port's firewall flows, nothing else
    # and the new verdicts: web is a client now
    assert verify(nb.state()) == []
    p = ports(nb.state())
    assert (
        Rig(nb.state()).probe(p["web"], p["db"], Service("IPv4", 6, port=5432)).action == "reject"
    )


def test_an_established_connection_survives_a_change_that_keeps_it_allowed() -> None:
    nb = Northbound(SqliteStore())
    nb.apply(copy.deepcopy(MICROSEG))
    rig, p = Rig(nb.state()), ports(nb.state())
    web, db = p["web"], p["db"]
    syn = tcp.build(40000, 5432, flags=0x02, seq=1000, ip_src=_ip(web), ip_dst=_ip(db))
    assert db.id in rig.send(web, _frame(web, db, 6, syn))
    syn_ack = tcp.build(
        5432, 40000, flags=0x12, seq=5000, ack=1001, ip_src=_ip(db), ip_dst=_ip(web)
    )
    assert web.id in rig.send(db, _frame(db, web, 6, syn_ack))
    # a policy ahead of the groups allowing the same: the rules and their priorities move
    first = nb.create(
        "policy",
        {
            "name": "first",
            "tenant": "shop",
            "priority": 1,
            "applied_to": {"tier": "db"},
            "rules": [
                {"action": "allow", "direction": "ingress", "protocol": "tcp", "ports": "5432"}
            ],
        },
    )
    rig.install(nb.state())
    for seq in range(3):
        data = tcp.build(
            40000, 5432, b"x", flags=0x10, seq=1001 + seq, ack=5001, ip_src=_ip(web), ip_dst=_ip(db)
        )
        assert db.id in rig.send(web, _frame(web, db, 6, data))
    # a change that denies it: a new attempt meets the rules and is refused
    nb.delete("policy", first.id)
    nb.update("port", web.id, {"labels": {"tier": "client"}})
    rig.install(nb.state())
    rig.reset()
    syn = tcp.build(40001, 5432, flags=0x02, seq=1000, ip_src=_ip(web), ip_dst=_ip(db))
    assert db.id not in rig.send(web, _frame(web, db, 6, syn))


def test_a_blocked_connection_meets_the_rules_again() -> None:
    st = state_of(MICROSEG)
    rig, p = Rig(st), ports(st)
    web, db = p["web"], p["db"]
    syn = tcp.build(40000, 5432, flags=0x02, seq=1000, ip_src=_ip(web), ip_dst=_ip(db))
    assert db.id in rig.send(web, _frame(web, db, 6, syn))
    # mark every entry blocked, as a change that denies them does
    for sw in rig.switches.values():
        for c in sw.conntrack.conns(None):
            c.mark |= 1
    data = tcp.build(
        40000, 5432, b"x", flags=0x10, seq=1001, ack=0, ip_src=_ip(web), ip_dst=_ip(db)
    )
    # still allowed by the rules: committed again, unblocked, and it passes
    assert db.id in rig.send(web, _frame(web, db, 6, data))
    assert all(not c.mark & 1 for sw in rig.switches.values() for c in sw.conntrack.conns(None))


def test_a_reject_answer_sent_through_the_pipeline_passes_with_the_answer_flag() -> None:
    from vnet.compiler.stages import FLAG_ANSWER, REG_FLAGS
    from vnet.pipeline.actions import OFPP_TABLE, Output, SetField
    from vnet.pipeline.fields import lookup

    doc = copy.deepcopy(MICROSEG)  # db's egress default-deny: it may only ask DNS
    doc["security_groups"][2]["rules"].append(
        {"direction": "egress", "protocol": "udp", "ports": "53"}
    )
    st = state_of(doc)
    rig, p = Rig(st), ports(st)
    client, db = p["client"], p["db"]
    assert rig.probe(client, db, Service("IPv4", 6, port=5432)).action == "reject"
    rst = tcp.build(5432, 40000, flags=0x14, seq=0, ack=1001, ip_src=_ip(db), ip_dst=_ip(client))
    sw = rig.where[db.id]
    no = next(n for n, q in sw.ports.items() if q.name == db.iface)
    flag = SetField(lookup(REG_FLAGS).index, FLAG_ANSWER, FLAG_ANSWER)
    for acts, reaches in (([Output(OFPP_TABLE)], False), ([flag, Output(OFPP_TABLE)], True)):
        rig.reset()
        syn = tcp.build(40000, 5432, flags=0x02, seq=1000, ip_src=_ip(client), ip_dst=_ip(db))
        rig.send(client, _frame(client, db, 6, syn))
        sw.packet_out(no, acts, _frame(db, client, 6, rst))
        sw._flush()
        assert (
            bool(
                client.id
                in {k for k, v in ((pid, d.frames()) for pid, d in rig.devices.items()) if v}
            )
            is reaches
        )


# -- a change to an established connection: cut (OVN's blocked mark) or never touched ----------
class _Conn:
    """web -> db tcp/5432 established on a rig, and its next segments either way."""

    def __init__(self, rig: Rig, web: Any, db: Any) -> None:
        self.rig, self.web, self.db = rig, web, db
        self.seq, self.ack = 1001, 5001
        syn = tcp.build(40000, 5432, flags=0x02, seq=1000, ip_src=_ip(web), ip_dst=_ip(db))
        assert db.id in rig.send(web, _frame(web, db, 6, syn))
        syn_ack = tcp.build(
            5432, 40000, flags=0x12, seq=5000, ack=1001, ip_src=_ip(db), ip_dst=_ip(web)
        )
        assert web.id in rig.send(db, _frame(db, web, 6, syn_ack))
        assert self.forth() and self.back()

    def forth(self) -> bool:
        """A data segment web -> db (the original direction): delivered?"""
        seg = tcp.build(40000, 5432, b"x", flags=0x18, seq=self.seq, ack=self.ack,
                        ip_src=_ip(self.web), ip_dst=_ip(self.db))  # fmt: skip
        self.seq += 1
        return self.db.id in self.rig.send(self.web, _frame(self.web, self.db, 6, seg))

    def back(self) -> bool:
        """A data segment db -> web (the reply direction): delivered?"""
        seg = tcp.build(5432, 40000, b"y", flags=0x18, seq=self.ack, ack=self.seq,
                        ip_src=_ip(self.db), ip_dst=_ip(self.web))  # fmt: skip
        self.ack += 1
        return self.web.id in self.rig.send(self.db, _frame(self.db, self.web, 6, seg))

    def marks(self) -> set[int]:
        """ct_mark of the connection's entries (db's zone and web's)."""
        return {
            c.mark
            for sw in self.rig.switches.values()
            for c in sw.conntrack.conns(None)
            if c.peers is not None  # TCP
        }


def _db_policy(action: str, direction: str = "ingress") -> dict[str, Any]:
    rule: dict[str, Any] = {"action": action, "direction": direction, "protocol": "tcp"}
    if direction == "ingress":
        rule["from"] = {"selector": {"tier": "web"}}
    else:
        rule["to"] = {"selector": {"tier": "db"}}
    applied = "db" if direction == "ingress" else "web"
    return {"name": "cut", "tenant": "shop", "priority": 1, "applied_to": {"tier": applied},
            "rules": [rule]}  # fmt: skip


_DENYING: dict[str, Any] = {
    # web becomes a client: protect-db rejects clients
    "relabel": lambda nb, p: nb.update("port", p["web"].id, {"labels": {"tier": "client"}}),
    "remove the allow": lambda nb, p: nb.update(
        "security_group", _group(nb, "db").id, {"rules": []}
    ),
    "add a deny": lambda nb, p: nb.create("policy", _db_policy("deny")),
    "add a reject": lambda nb, p: nb.create("policy", _db_policy("reject")),
    "add an egress deny": lambda nb, p: nb.create("policy", _db_policy("deny", "egress")),
}


def _group(nb: Northbound, name: str) -> Any:
    return next(g for g in nb.state().all("security_group") if g.name == name)


@pytest.mark.parametrize("change", sorted(_DENYING))
def test_a_change_that_denies_an_established_connection_cuts_it(change: str) -> None:
    nb = Northbound(SqliteStore())
    nb.apply(copy.deepcopy(MICROSEG))
    rig, p = Rig(nb.state()), ports(nb.state())
    conn = _Conn(rig, p["web"], p["db"])
    assert conn.marks() == {0}
    _DENYING[change](nb, p)
    rig.install(nb.state())
    rig.packet_ins.clear()
    assert not conn.forth()  # the original direction meets the rules: denied
    assert 1 in conn.marks()  # and the connection is marked blocked
    assert not conn.back()  # so its replies drop too
    assert not conn.forth()
    rejected = [rig.punts[pi.cookie].action for pi in rig.packet_ins if pi.cookie in rig.punts]
    if change in ("relabel", "add a reject"):
        assert rejected and set(rejected) == {"reject"}  # the sender gets its RST
    else:
        assert rejected == []


def _stepwise(rig: Rig, before: State, after: State, between: Any) -> int:
    """Install `after` over `before` as the reconciler does -- its flow-mods in order, adds
    before deletes -- one mod at a time, calling `between()` after each; the mods sent."""
    from vnet.compiler import localize
    from vnet.controller.reconcile import flow_diff
    from vnet.datapath.switch import FlowModCommand  # noqa: F401 (the switch's own type)

    comp = Compiler()
    old_l, new_l = comp.compile(before), comp.compile(after)
    n = 0
    for ch in after.all("chassis"):
        sw = rig.switches[ch.id]
        ofports = {q.name: no for no, q in sw.ports.items()}
        mods = flow_diff(localize(new_l, after, ch, ofports), localize(old_l, before, ch, ofports))
        for mod in mods:
            sw.commit([mod])
            n += 1
            between()
    rig.state = after
    rig.punts = punts(new_l)
    return n


_KEEPING: dict[str, Any] = {
    # a policy ahead of the others allowing the same: every policy rule's priority moves
    "a policy ahead": lambda nb, p: nb.create(
        "policy",
        {
            "name": "first",
            "tenant": "shop",
            "priority": 1,
            "applied_to": {"tier": "db"},
            "rules": [
                {"action": "allow", "direction": "ingress", "protocol": "tcp", "ports": "5432"}
            ],
        },
    ),
    # web joins the clients group too: its memberships change, db still lets it in
    "web joins a group": lambda nb, p: nb.update(
        "port", p["web"].id, {"security_groups": [_group(nb, "clients").id]}
    ),
    # the allow moves from the group to a policy
    "the allow moves": lambda nb, p: (
        nb.create(
            "policy",
            {
                "name": "moved",
                "tenant": "shop",
                "priority": 50,
                "applied_to": {"tier": "db"},
                "rules": [
                    {
                        "action": "allow",
                        "direction": "ingress",
                        "protocol": "tcp",
                        "ports": "5432",
                        "from": {"selector": {"tier": "web"}},
                    }
                ],
            },
        ),
        nb.update("security_group", _group(nb, "db").id, {"rules": []}),
    ),
    # a new group that sorts first: every group's and selector's bit moves
    "a group ahead": lambda nb, p: nb.create(
        "security_group",
        {
            "name": "aaa",
            "tenant": "shop",
            "selector": {"tier": "none"},
            "rules": [{"direction": "ingress", "protocol": "udp", "ports": "53"}],
        },
    ),
}


@pytest.mark.parametrize("change", sorted(_KEEPING))
def test_a_change_that_keeps_a_connection_allowed_never_drops_a_packet(change: str) -> None:
    nb = Northbound(SqliteStore())
    nb.apply(copy.deepcopy(MICROSEG))
    before = nb.state()
    rig, p = Rig(before), ports(before)
    conn = _Conn(rig, p["web"], p["db"])
    _KEEPING[change](nb, p)
    after = nb.state()
    assert verify(after) == []
    lost: list[int] = []

    def both_ways() -> None:
        if not (conn.forth() and conn.back()):
            lost.append(len(lost))

    sent = _stepwise(rig, before, after, both_ways)
    assert sent and lost == []
    assert conn.marks() == {0}

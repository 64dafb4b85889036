"""Gateway failover from chassis' BFD reports, compiled and run on vnet switches.

Three chassis: hv1 holds the workload and has no uplink, hv2 and hv3 are the
router's gateway chassis (in that order), each with an uplink to the physical
network (`test_localnet.Rig`).  The floating IP is not distributed (hv1 has
no uplink), so the active gateway chassis translates it.  What chassis report
of their BFD sessions (`BFDStatus`) decides which gateway chassis is active:
the first one no reporter sees up is passed over, one reporter still seeing it
up keeps it, and no report at all keeps the first.
"""

from __future__ import annotations

from typing import Any

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Ether

from vnet.compiler import Compiler
from vnet.model.l3 import active_gateway
from vnet.model.objects import (
    BFDStatus,
    Chassis,
    FixedIP,
    FloatingIP,
    Gateway,
    Neighbour,
    Network,
    Port,
    Route,
    Router,
    RouterInterface,
    Subnet,
    Tenant,
)
from vnet.model.rules import State

from .test_localnet import UPLINK, Rig

UP_MAC, UP_IP, SERVER = "02:00:00:00:99:01", "203.0.113.1", "198.51.100.7"
RMAC, GWMAC, GWIP = "0a:00:00:00:01:01", "0a:00:00:00:01:99", "203.0.113.5"
FIP, FIP_MAC = "203.0.113.20", "0a:00:00:00:0f:01"
A_MAC, A_IP = "02:00:00:00:01:0a", "10.0.1.10"


def model(reports: dict[str, dict[str, str]] | None = None) -> State:
    objs: list[Any] = []
    for i, ch in enumerate(("hv1", "hv2", "hv3"), 1):
        phys = {"phys": UPLINK} if ch != "hv1" else {}
        objs.append(Chassis(id=ch, name=ch, underlay=f"192.0.2.{i}", encap="geneve",
                            physnets=phys))  # fmt: skip
    objs.append(Tenant(id="ops", name="ops"))
    objs.append(Network(id="ext", name="ext", tenant="ops", segment_id=77, external=True,
                        physnet="phys"))  # fmt: skip
    objs.append(Subnet(id="se", name="se", network="ext", tenant="ops", cidr="203.0.113.0/24",
                       gateway=UP_IP))  # fmt: skip
    objs.append(Tenant(id="t1", name="t1"))
    objs.append(Network(id="n1", name="n1", tenant="t1", segment_id=11))
    objs.append(Subnet(id="s1", name="s1", network="n1", tenant="t1", cidr="10.0.1.0/24",
                       gateway="10.0.1.1"))  # fmt: skip
    objs.append(Port(id="a1", name="a1", network="n1", tenant="t1", mac=A_MAC,
                     fixed_ips=[FixedIP(subnet="s1", ip=A_IP)], chassis="hv1", tunnel_key=1))  # fmt: skip
    gw = Gateway(network="ext", ip=GWIP, chassis=["hv2", "hv3"], mac=GWMAC, tunnel_key=101)
    objs.append(Router(id="r1", name="r1", tenant="t1", tunnel_key=1, gateway=gw,
                       interfaces=[RouterInterface(subnet="s1", mac=RMAC, tunnel_key=32767)],
                       routes=[Route(cidr="0.0.0.0/0", nexthop=UP_IP)]))  # fmt: skip
    objs.append(Neighbour(id="nb1", name=UP_IP, tenant="t1", router="r1", network="ext",
                          ip=UP_IP, mac=UP_MAC))  # fmt: skip
    objs.append(FloatingIP(id="f", name="f", tenant="t1", network="ext", ip=FIP, port="a1",
                           mac=FIP_MAC))  # fmt: skip
    for ch, sessions in (reports or {}).items():
        objs.append(BFDStatus(id=ch, name=ch, sessions=sessions))
    return State.of(objs)


HV2_DOWN = {"hv1": {"hv2": "down", "hv3": "up"}, "hv3": {"hv2": "down", "hv1": "up"}}


def answers_arp(rig: Rig, chassis: str, ip: str) -> bool:
    """Whether an ARP request for `ip` into `chassis`' uplink alone is answered."""
    who = Ether(src=UP_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=UP_MAC, psrc=UP_IP, pdst=ip)  # fmt: skip
    rig.outside.clear()
    rig.from_outside(chassis, bytes(who))
    return any(ARP in f and f[ARP].op == 2 and f[ARP].psrc == ip for f in rig.outside)


def redirected_to(rig: Rig) -> set[str]:
    """Where a1's frame out of the router is tunnelled to (and it leaves translated)."""
    before = dict(rig.counts)
    rig.outside.clear()
    out = Ether(src=A_MAC, dst=RMAC) / IP(src=A_IP, dst=SERVER) / UDP(sport=4000, dport=53)
    rig.send("a1", bytes(out))
    (f,) = [f for f in rig.outside if IP in f]
    assert (f.src, f[IP].src) == (GWMAC, FIP)
    return {c for c, n in rig.counts.items() if n > before.get(c, 0)}


def reaches_fip(rig: Rig, chassis: str) -> bool:
    ping = Ether(src=UP_MAC, dst=GWMAC) / IP(src=SERVER, dst=FIP) / ICMP(id=7)
    rig.from_outside(chassis, bytes(ping))
    return any(IP in g and g[IP].dst == A_IP for g in rig.got("a1"))


def test_without_reports_the_first_gateway_chassis_is_active() -> None:
    st = model()
    assert active_gateway(st.get("router", "r1"), st) == "hv2"
    rig = Rig(st)
    assert answers_arp(rig, "hv2", GWIP) and not answers_arp(rig, "hv3", GWIP)
    assert answers_arp(rig, "hv2", FIP) and not answers_arp(rig, "hv3", FIP)
    assert redirected_to(rig) == {"hv2"}
    assert reaches_fip(rig, "hv2") and not reaches_fip(rig, "hv3")


def test_a_gateway_chassis_no_one_sees_up_fails_over_to_the_next() -> None:
    st = model(HV2_DOWN)
    assert active_gateway(st.get("router", "r1"), st) == "hv3"
    rig = Rig(st)
    assert answers_arp(rig, "hv3", GWIP) and not answers_arp(rig, "hv2", GWIP)
    assert answers_arp(rig, "hv3", FIP) and not answers_arp(rig, "hv2", FIP)
    assert redirected_to(rig) == {"hv3"}  # hv1's redirect flows point at hv3
    assert reaches_fip(rig, "hv3") and not reaches_fip(rig, "hv2")


def test_one_reporter_still_seeing_it_up_keeps_the_gateway() -> None:
    st = model({"hv1": {"hv2": "down"}, "hv3": {"hv2": "up"}})
    assert active_gateway(st.get("router", "r1"), st) == "hv2"
    rig = Rig(st)
    assert answers_arp(rig, "hv2", GWIP) and not answers_arp(rig, "hv3", GWIP)
    assert redirected_to(rig) == {"hv2"}


def test_what_a_chassis_reports_of_itself_or_a_stale_report_of_its_own_does_not_count() -> None:
    # hv2's own report (say, from before it was cut off) says nothing of hv2
    st = model({"hv2": {"hv3": "up", "hv1": "up"}})
    assert active_gateway(st.get("router", "r1"), st) == "hv2"
    # every gateway chassis down: the first stays (nowhere better to go)
    st = model({"hv1": {"hv2": "down", "hv3": "init"}})
    assert active_gateway(st.get("router", "r1"), st) == "hv2"


def test_a_failover_rebuilds_the_router_and_its_floating_ip_only() -> None:
    comp = Compiler()
    comp.compile(model())
    keys = set(comp._memo)
    entries = dict(comp._memo)
    after = model(HV2_DOWN)
    got = comp.compile(after)
    assert [(lf.flow, lf.flow.origin) for lf in got] == [
        (lf.flow, lf.flow.origin) for lf in Compiler().compile(after)
    ]
    assert set(comp._memo) == keys
    rebuilt = {k for k in keys if comp._memo[k] is not entries[k]}
    assert rebuilt == {("router", "r1"), ("floating_ip", "f")}
    assert comp.recompiled == 2

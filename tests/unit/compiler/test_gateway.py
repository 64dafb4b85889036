"""A router's gateway, compiled and run: SNAT, floating IPs, port forwardings, the
chassis redirect and the gateway's residency, on real vnet switches.

Two chassis: hv1 holds the workloads, hv2 is the router's gateway chassis.
Each chassis' uplink is a memory device joined by a hub (the physical switch,
`test_localnet.Rig`); the tunnels by the simulated underlay.  The upstream
router (203.0.113.1) is a learned neighbour of the router, the outside is
whatever the test sends into an uplink.  The model objects carry what
admission fills in (MACs, keys), so the compiler is tested on its own.
"""

from __future__ import annotations

from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether

from vnet.model.objects import (
    Chassis,
    FixedIP,
    FloatingIP,
    Gateway,
    Neighbour,
    Network,
    Port,
    PortForwarding,
    Route,
    Router,
    RouterInterface,
    Subnet,
    Tenant,
)
from vnet.model.rules import State

from .test_localnet import UPLINK, Rig

UP_MAC = "02:00:00:00:99:01"  # the upstream router
UP_IP = "203.0.113.1"
SERVER = "198.51.100.7"  # somewhere outside, behind the upstream router
RMAC = {"r1": "0a:00:00:00:01:01", "r2": "0a:00:00:00:02:01"}
GWMAC = {"r1": "0a:00:00:00:01:99", "r2": "0a:00:00:00:02:99"}
GWIP = {"r1": "203.0.113.5", "r2": "203.0.113.6"}
FIP, FIP_MAC = "203.0.113.20", "0a:00:00:00:0f:01"
A_MAC = {"r1": "02:00:00:00:01:0a", "r2": "02:00:00:00:02:0a"}
A_IP = "10.0.1.10"  # both tenants' workload: the same internal address


def model(
    tenants: tuple[str, ...] = ("r1",),
    hv1_uplink: bool = False,
    fip: bool = False,
    forward: bool = False,
    snat: bool = True,
) -> State:
    objs: list[Any] = []
    for i, ch in enumerate(("hv1", "hv2"), 1):
        phys = {"phys": UPLINK} if ch == "hv2" or hv1_uplink else {}
        objs.append(Chassis(id=ch, name=ch, underlay=f"192.0.2.{i}", encap="geneve",
                            physnets=phys))  # fmt: skip
    objs.append(Tenant(id="ops", name="ops"))
    objs.append(Network(id="ext", name="ext", tenant="ops", segment_id=77, external=True,
                        physnet="phys"))  # fmt: skip
    objs.append(Subnet(id="se", name="se", network="ext", tenant="ops", cidr="203.0.113.0/24",
                       gateway=UP_IP))  # fmt: skip
    for k, r in enumerate(tenants, 1):
        t, n, s = f"t{k}", f"n{k}", f"s{k}"
        objs.append(Tenant(id=t, name=t))
        objs.append(Network(id=n, name=n, tenant=t, segment_id=10 + k))
        objs.append(Subnet(id=s, name=s, network=n, tenant=t, cidr="10.0.1.0/24",
                           gateway="10.0.1.1"))  # fmt: skip
        objs.append(Port(id=f"a{k}", name=f"a{k}", network=n, tenant=t, mac=A_MAC[r],
                         fixed_ips=[FixedIP(subnet=s, ip=A_IP)], chassis="hv1", tunnel_key=1))  # fmt: skip
        gw = Gateway(network="ext", ip=GWIP[r], chassis=["hv2", "hv1"] if hv1_uplink else ["hv2"],
                     snat=snat, mac=GWMAC[r], tunnel_key=100 + k)  # fmt: skip
        objs.append(Router(id=r, name=r, tenant=t, tunnel_key=k, gateway=gw,
                           interfaces=[RouterInterface(subnet=s, mac=RMAC[r], tunnel_key=32767)],
                           routes=[Route(cidr="0.0.0.0/0", nexthop=UP_IP)]))  # fmt: skip
        objs.append(Neighbour(id=f"nb{k}", name=UP_IP, tenant=t, router=r, network="ext",
                              ip=UP_IP, mac=UP_MAC))  # fmt: skip
    if fip:
        objs.append(FloatingIP(id="f", name="f", tenant="t1", network="ext", ip=FIP,
                               port="a1", mac=FIP_MAC))  # fmt: skip
    if forward:
        pf = PortForwarding(protocol="tcp", external_port=8080, port="a1", internal_port=80)
        objs.append(FloatingIP(id="f", name="f", tenant="t1", network="ext", ip=FIP,
                               port_forwardings=[pf], mac=FIP_MAC))  # fmt: skip
    return State.of(objs)


def out_of(k: int, dst: str = SERVER, sport: int = 4000) -> bytes:
    r = f"r{k}"
    return bytes(Ether(src=A_MAC[r], dst=RMAC[r]) / IP(src=A_IP, dst=dst, ttl=64)
                 / UDP(sport=sport, dport=53) / b"q")  # fmt: skip


def wire(rig: Rig) -> list[Ether]:
    """What reached the physical network, taken."""
    got, rig.outside[:] = list(rig.outside), []
    return got


def tunnelled(rig: Rig) -> int:
    return sum(rig.counts.values())


def test_snat_on_the_gateway_chassis_and_the_reply_back() -> None:
    rig = Rig(model())
    rig.send("a1", out_of(1))
    (f,) = wire(rig)
    assert (f.src, f.dst) == (GWMAC["r1"], UP_MAC)
    assert (f[IP].src, f[IP].dst, f[IP].ttl) == (GWIP["r1"], SERVER, 63)  # routed once
    assert tunnelled(rig) >= 1  # redirected from hv1 to hv2 by the underlay
    sport = f[UDP].sport
    reply = Ether(src=UP_MAC, dst=GWMAC["r1"]) / IP(src=SERVER, dst=GWIP["r1"]) / UDP(sport=53, dport=sport) / b"a"  # fmt: skip
    rig.from_outside("hv2", bytes(reply))
    (back,) = rig.got("a1")
    assert (back.src, back.dst) == (RMAC["r1"], A_MAC["r1"])
    assert (back[IP].src, back[IP].dst, back[UDP].dport) == (SERVER, A_IP, 4000)


def test_without_snat_the_internal_address_leaves_as_it_is() -> None:
    rig = Rig(model(snat=False))
    rig.send("a1", out_of(1))
    (f,) = wire(rig)
    assert f[IP].src == A_IP


def test_an_unsolicited_packet_to_the_gateway_address_reaches_no_one() -> None:
    rig = Rig(model())
    probe = Ether(src=UP_MAC, dst=GWMAC["r1"]) / IP(src=SERVER, dst=GWIP["r1"]) / UDP(sport=53, dport=4000)  # fmt: skip
    rig.from_outside("hv2", bytes(probe))
    assert not rig.got("a1") and not wire(rig)


def test_two_tenants_with_one_internal_subnet_translate_apart() -> None:
    rig = Rig(model(("r1", "r2")))
    rig.send("a1", out_of(1))
    rig.send("a2", out_of(2))
    f1, f2 = wire(rig)
    assert (f1[IP].src, f2[IP].src) == (GWIP["r1"], GWIP["r2"])
    for k, f in ((2, f2), (1, f1)):
        r = f"r{k}"
        reply = Ether(src=UP_MAC, dst=GWMAC[r]) / IP(src=SERVER, dst=GWIP[r]) / UDP(sport=53, dport=f[UDP].sport) / b"a"  # fmt: skip
        rig.from_outside("hv2", bytes(reply))
        (back,) = rig.got(f"a{k}")
        assert back[IP].dst == A_IP and back.dst == A_MAC[r]
        assert not rig.got(f"a{3 - k}")


def test_the_gateway_answers_arp_on_its_active_chassis_only() -> None:
    rig = Rig(model(hv1_uplink=True))
    who = Ether(src=UP_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=UP_MAC, psrc=UP_IP, pdst=GWIP["r1"])  # fmt: skip
    for ch in ("hv1", "hv2"):  # the physical switch floods it to every uplink
        rig.from_outside(ch, bytes(who))
    answers = [f for f in wire(rig) if ARP in f and f[ARP].op == 2]
    assert [(f[ARP].hwsrc, f[ARP].psrc) for f in answers] == [(GWMAC["r1"], GWIP["r1"])]


def test_a_floating_ip_on_the_gateway_chassis_both_ways() -> None:
    rig = Rig(model(fip=True))
    who = Ether(src=UP_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=UP_MAC, psrc=UP_IP, pdst=FIP)  # fmt: skip
    rig.from_outside("hv2", bytes(who))
    (ans,) = [f for f in wire(rig) if ARP in f and f[ARP].op == 2]
    assert ans[ARP].hwsrc == GWMAC["r1"]  # hv1 has no uplink: the gateway chassis translates
    ping = Ether(src=UP_MAC, dst=GWMAC["r1"]) / IP(src=SERVER, dst=FIP) / ICMP(id=7)
    rig.from_outside("hv2", bytes(ping))
    (got,) = rig.got("a1")
    assert (got[IP].src, got[IP].dst) == (SERVER, A_IP)
    echo = Ether(src=A_MAC["r1"], dst=RMAC["r1"]) / IP(src=A_IP, dst=SERVER) / ICMP(type=0, id=7)  # fmt: skip
    rig.send("a1", bytes(echo))
    (f,) = wire(rig)
    assert (f[IP].src, f[IP].dst, f[ICMP].type, f.src) == (FIP, SERVER, 0, GWMAC["r1"])
    rig.send("a1", out_of(1))  # its own connections leave from its floating IP too
    (f,) = wire(rig)
    assert f[IP].src == FIP


def test_a_distributed_floating_ip_is_translated_on_its_ports_chassis() -> None:
    rig = Rig(model(hv1_uplink=True, fip=True))
    who = Ether(src=UP_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=UP_MAC, psrc=UP_IP, pdst=FIP)  # fmt: skip
    for ch in ("hv1", "hv2"):  # the physical switch floods it to every uplink
        rig.from_outside(ch, bytes(who))
    answers = [f for f in wire(rig) if ARP in f and f[ARP].op == 2]
    assert [f[ARP].hwsrc for f in answers] == [FIP_MAC]
    before = tunnelled(rig)
    rig.send("a1", out_of(1))
    (f,) = wire(rig)
    assert (f.src, f.dst, f[IP].src, f[IP].ttl) == (FIP_MAC, UP_MAC, FIP, 63)
    assert tunnelled(rig) == before  # out of hv1's own uplink: no redirect
    reply = Ether(src=UP_MAC, dst=FIP_MAC) / IP(src=SERVER, dst=FIP) / UDP(sport=53, dport=f[UDP].sport) / b"a"  # fmt: skip
    rig.from_outside("hv1", bytes(reply))
    (back,) = rig.got("a1")
    assert (back[IP].dst, back[UDP].dport) == (A_IP, 4000)
    assert tunnelled(rig) == before


def test_a_port_forwarding() -> None:
    rig = Rig(model(forward=True))
    syn = Ether(src=UP_MAC, dst=GWMAC["r1"]) / IP(src=SERVER, dst=FIP) / TCP(sport=5555, dport=8080, flags="S")  # fmt: skip
    rig.from_outside("hv2", bytes(syn))
    (got,) = rig.got("a1")
    assert (got[IP].dst, got[TCP].dport) == (A_IP, 80)
    other = Ether(src=UP_MAC, dst=GWMAC["r1"]) / IP(src=SERVER, dst=FIP) / TCP(sport=5555, dport=22, flags="S")  # fmt: skip
    rig.from_outside("hv2", bytes(other))
    assert not rig.got("a1")
    synack = Ether(src=A_MAC["r1"], dst=RMAC["r1"]) / IP(src=A_IP, dst=SERVER) / TCP(sport=80, dport=5555, flags="SA")  # fmt: skip
    rig.send("a1", bytes(synack))
    (f,) = wire(rig)
    assert (f[IP].src, f[TCP].sport) == (FIP, 8080)


def test_the_gateway_address_answers_ping_from_outside() -> None:
    rig = Rig(model())
    ping = Ether(src=UP_MAC, dst=GWMAC["r1"]) / IP(src=UP_IP, dst=GWIP["r1"]) / ICMP(id=9, seq=1)
    rig.from_outside("hv2", bytes(ping))
    (f,) = wire(rig)
    assert (f.src, f.dst, f[IP].src, f[IP].dst) == (GWMAC["r1"], UP_MAC, GWIP["r1"], UP_IP)
    assert (f[ICMP].type, f[ICMP].id) == (0, 9)

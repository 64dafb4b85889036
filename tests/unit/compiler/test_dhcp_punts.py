"""DHCP requests and router solicitations are punted after port security, never flooded."""

from __future__ import annotations

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dhcp6 import DUID_LL, DHCP6_Solicit, DHCP6OptClientId
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_RS, IPv6
from scapy.layers.l2 import ARP, Ether

from tests.unit.compiler.test_router import GW_MAC, IP4, MAC, ONE, Rig, model
from vnet.compiler import dhcp
from vnet.compiler.switch import eui64_link_local
from vnet.controller.dhcp import server_mac
from vnet.model.state import State

BCAST = "ff:ff:ff:ff:ff:ff"


def discover(
    mac: str = MAC["a"], src: str = "0.0.0.0", dst: str = "255.255.255.255", edst: str = BCAST
) -> bytes:
    b = BOOTP(chaddr=bytes.fromhex(mac.replace(":", "")), xid=1)
    d = DHCP(options=[("message-type", "discover"), "end"])
    return bytes(Ether(src=mac, dst=edst) / IP(src=src, dst=dst) / UDP(sport=68, dport=67) / b / d)


def punted(rig: Rig) -> list[dhcp.Punt]:
    table = dhcp.punts(rig.lflows)
    return [table[pi.cookie] for pi in rig.packet_ins if pi.cookie in table]


def with_subnets(state: State, **fields: object) -> State:
    """The model with every subnet of the fields' family changed."""
    v = 6 if "ipv6_mode" in fields else 4
    s = state.copy()
    for sub in state.all("subnet"):
        if sub.ip_version == v:
            s.objects["subnet"][sub.id] = sub.changed(**fields)
    return s


def test_a_discover_goes_to_the_controller_and_to_no_port() -> None:
    rig = Rig(model(ONE))
    rig.send("a", discover())
    assert punted(rig) == [dhcp.Punt("dhcpv4", "a", "s1")]
    assert not rig.got("b") and not rig.got("a")


def test_a_renewal_to_the_router_is_punted_not_routed() -> None:
    rig = Rig(model(ONE))
    rig.send("a", discover(src=IP4["a"], dst="10.0.1.1", edst=GW_MAC["s1"]))
    assert punted(rig) == [dhcp.Punt("dhcpv4", "a", "s1")]
    assert not rig.got("b")


def test_a_request_failing_port_security_is_dropped() -> None:
    rig = Rig(model(ONE))
    rig.send("a", discover(mac="02:00:00:00:09:09"))
    assert punted(rig) == [] and not rig.got("b")


def test_other_traffic_from_no_address_is_dropped() -> None:
    rig = Rig(model(ONE))
    f = (
        Ether(src=MAC["a"], dst=BCAST)
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=5, dport=6)
    )
    rig.send("a", bytes(f))
    assert rig.packet_ins == [] and not rig.got("b")


def test_no_dhcp_no_punt_and_the_discover_is_dropped() -> None:
    rig = Rig(with_subnets(model(ONE), dhcp=False))
    assert dhcp.punts(rig.lflows) == {}
    rig.send("a", discover())
    assert rig.packet_ins == [] and not rig.got("b")


def test_router_solicitations_and_dhcpv6_are_punted_per_ipv6_mode() -> None:
    ll = eui64_link_local(MAC["a"])
    rs = (
        Ether(src=MAC["a"], dst="33:33:00:00:00:02")
        / IPv6(src=ll, dst="ff02::2", hlim=255)
        / ICMPv6ND_RS()
    )
    sol = (Ether(src=MAC["a"], dst="33:33:00:01:00:02") / IPv6(src=ll, dst="ff02::1:2")
           / UDP(sport=546, dport=547) / DHCP6_Solicit(trid=1) / DHCP6OptClientId(duid=DUID_LL(lladdr=MAC["a"])))  # fmt: skip
    rig = Rig(with_subnets(model(ONE), ipv6_mode=None))
    rig.send("a", bytes(rs))
    rig.send("a", bytes(sol))
    assert punted(rig) == []
    rig = Rig(with_subnets(model(ONE), ipv6_mode="dhcpv6-stateful"))
    rig.send("a", bytes(rs))
    rig.send("a", bytes(sol))
    assert punted(rig) == [dhcp.Punt("rs", "a", "s1v6"), dhcp.Punt("dhcpv6", "a", "s1v6")]
    assert not rig.got("b")


def test_without_a_router_the_switch_answers_arp_for_the_dhcp_server() -> None:
    # a renewal goes unicast to the server identifier (the subnet's gateway): with no
    # router on the subnet, the switch answers for it with the server's MAC
    s = model(ONE).copy()
    del s.objects["router"]
    for sub in list(s.all("subnet")):
        if sub.ip_version == 4:
            s.objects["subnet"][sub.id] = sub.changed(gateway=sub.cidr.replace("0/24", "1"))
    rig = Rig(s)
    ask = Ether(src=MAC["a"], dst=BCAST) / ARP(op=1, hwsrc=MAC["a"], psrc=IP4["a"], pdst="10.0.1.1")
    rig.send("a", bytes(ask))
    (ans,) = rig.got("a")
    mac, routed = server_mac(s, s.get("subnet", "s1"))
    assert not routed and (ans[ARP].op, ans[ARP].hwsrc, ans[ARP].psrc) == (2, mac, "10.0.1.1")
    rig.send("a", discover(src=IP4["a"], dst="10.0.1.1", edst=mac))  # the renewal: punted
    assert punted(rig) == [dhcp.Punt("dhcpv4", "a", "s1")]

"""The controller answers a port's punted DHCP, DHCPv6 and router solicitation from the model:
a real vnet switch punts, the punt handler answers out of the port it came in by."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.dhcp6 import (
    DUID_LL,
    DHCP6_Advertise,
    DHCP6_Solicit,
    DHCP6OptClientId,
    DHCP6OptIA_NA,
    DHCP6OptIAAddress,
)
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import ICMPv6ND_RA, ICMPv6ND_RS, ICMPv6NDOptMTU, IPv6
from scapy.layers.l2 import Ether

from tests.unit.compiler.test_dhcp_punts import discover, with_subnets
from tests.unit.compiler.test_router import GW_MAC, IP4, MAC, ONE, Rig, model
from vnet.compiler.switch import eui64_link_local
from vnet.controller.punt import ANSWER, PacketIn, Punter, compiled_punts
from vnet.model.state import State
from vnet.packet import flowkey as fk


@dataclass
class Southbound:
    sent: list[tuple[int, bytes, int, tuple[Any, ...]]] = field(default_factory=list)

    async def packet_out(self, in_port: int, data: bytes, out_port: int, actions: Any = ()) -> None:
        self.sent.append((in_port, data, out_port, tuple(actions)))


@dataclass
class Link:
    southbound: Southbound = field(default_factory=Southbound)
    chassis: str | None = "hv1"
    ofports: dict[str, int] = field(default_factory=dict)


def answered(state: State, frames: list[bytes]) -> tuple[list[Ether], dict[str, Any]]:
    """Each frame sent by port a through the switch; the handler's answers, and its counts."""
    rig = Rig(state)
    link = Link()
    punter = Punter(lambda: state, lambda dpid: link, lambda st: compiled_punts(rig.lflows))
    for f in frames:
        rig.send("a", f)
    in_port = rig.where["a"].port_by_name(state.get("port", "a").iface).port_no  # type: ignore[union-attr]
    for pi in rig.packet_ins:
        asyncio.run(punter.handle(PacketIn(1, pi.key[fk.IN_PORT], pi.cookie, pi.reason, pi.frame)))
    for _, _, out_port, actions in link.southbound.sent:
        assert out_port == in_port and actions == ANSWER
    return [Ether(d) for _, d, _, _ in link.southbound.sent], punter.stats()


def test_discover_is_offered_the_models_address_and_renewal_acked() -> None:
    st = model(ONE)
    st.objects["network"]["n1"] = st.get("network", "n1").changed(mtu=1400)
    st.objects["subnet"]["s1"] = st.get("subnet", "s1").changed(
        dns_nameservers=["10.0.0.53"], lease_time=600
    )
    renew = (
        Ether(src=MAC["a"], dst=GW_MAC["s1"])
        / IP(src=IP4["a"], dst="10.0.1.1")
        / UDP(sport=68, dport=67)
    )
    renew /= BOOTP(chaddr=bytes.fromhex(MAC["a"].replace(":", "")), ciaddr=IP4["a"], xid=2)
    renew /= DHCP(options=[("message-type", "request"), "end"])
    (offer, ack), stats = answered(st, [discover(), bytes(renew)])
    o = {x[0]: x[1] for x in offer[DHCP].options if isinstance(x, tuple)}
    assert (offer.src, offer.dst, offer[BOOTP].yiaddr) == (GW_MAC["s1"], MAC["a"], IP4["a"])
    assert o["message-type"] == 2 and o["server_id"] == "10.0.1.1" and o["router"] == "10.0.1.1"
    assert (o["interface-mtu"], o["name_server"], o["lease_time"]) == (1400, "10.0.0.53", 600)
    a = {x[0]: x[1] for x in ack[DHCP].options if isinstance(x, tuple)}
    assert a["message-type"] == 5 and ack[IP].dst == IP4["a"]
    assert (stats["dhcp_offer"], stats["dhcp_ack"]) == (1, 1)


def test_a_client_with_another_mac_gets_nothing() -> None:
    st = model(ONE)
    f = Ether(discover())
    f[BOOTP].chaddr = bytes.fromhex("020000000909") + bytes(10)
    out, stats = answered(st, [bytes(f)])
    assert out == [] and stats["dhcp_silent"] == 1


def test_a_solicit_and_a_router_solicitation_are_answered_per_mode() -> None:
    st = with_subnets(model(ONE), ipv6_mode="dhcpv6-stateful")
    st.objects["network"]["n1"] = st.get("network", "n1").changed(mtu=1400)
    ll = eui64_link_local(MAC["a"])
    rs = (
        Ether(src=MAC["a"], dst="33:33:00:00:00:02")
        / IPv6(src=ll, dst="ff02::2", hlim=255)
        / ICMPv6ND_RS()
    )
    sol = (Ether(src=MAC["a"], dst="33:33:00:01:00:02") / IPv6(src=ll, dst="ff02::1:2")
           / UDP(sport=546, dport=547) / DHCP6_Solicit(trid=1) / DHCP6OptClientId(duid=DUID_LL(lladdr=MAC["a"])))  # fmt: skip
    sol = sol / DHCP6OptIA_NA(iaid=1)
    (ra, adv), stats = answered(st, [bytes(rs), bytes(sol)])
    assert (
        (ra.src, ra.dst) == (GW_MAC["s1v6"], MAC["a"])
        and ra[IPv6].dst == ll
        and ra[ICMPv6ND_RA].M == 1
    )
    assert ra[ICMPv6NDOptMTU].mtu == 1400
    assert adv.haslayer(DHCP6_Advertise) and adv[DHCP6OptIAAddress].addr == "fd00:1::10"
    assert (stats["ra_solicited"], stats["dhcpv6_advertise"]) == (1, 1)


def test_unsolicited_advertisements_go_to_each_port_of_a_subnet_with_an_ipv6_mode() -> None:
    st = with_subnets(model({"a": "hv1", "b": "hv2"}), ipv6_mode="dhcpv6-stateless")
    here = Link(chassis="hv1", ofports={st.get("port", "a").iface: 7, st.get("port", "b").iface: 8})
    punter = Punter(lambda: st, lambda dpid: here, lambda s: {})
    asyncio.run(punter.advertise([here]))
    ((_, data, out_port, actions),) = here.southbound.sent  # a only: b is on hv2
    assert (out_port, actions) == (7, ANSWER)
    ra = Ether(data)
    assert (ra.src, ra.dst, ra[IPv6].dst) == (GW_MAC["s1v6"], "33:33:00:00:00:01", "ff02::1")
    assert (ra[ICMPv6ND_RA].M, ra[ICMPv6ND_RA].O) == (0, 1)
    assert punter.stats()["ra_periodic"] == 1
    none = Link(chassis="hv1", ofports=dict(here.ofports))
    plain = with_subnets(model({"a": "hv1", "b": "hv2"}), ipv6_mode=None)
    asyncio.run(Punter(lambda: plain, lambda dpid: none, lambda s: {}).advertise([none]))
    assert none.southbound.sent == []

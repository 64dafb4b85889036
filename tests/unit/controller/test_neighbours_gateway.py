"""The upstream router through a router's gateway: asked for out of the uplink, learned
from its answer -- on the gateway chassis, flat and on a VLAN.

The gateway rig of `compiler.test_gateway` (workloads on hv1, the gateway on
hv2, uplinks joined by a hub), without the binding of the upstream router it
starts with: a packet out of the gateway finds no MAC for the default route's
next hop and is punted on hv2; the controller's request (`Neighbours.request`,
injected by packet-out as the controller sends it) leaves by hv2's uplink,
tagged on a VLAN network; the upstream's reply, from the uplink, is punted to
be learned with the gateway's interface.
"""

from __future__ import annotations

from typing import Any

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from tests.unit.compiler.test_gateway import GWIP, GWMAC, UP_IP, UP_MAC, Rig, model, out_of, wire
from vnet.compiler import Compiler, neighbour
from vnet.controller.neighbour import Neighbours
from vnet.controller.punt import ANSWER
from vnet.model.rules import State
from vnet.packet.addr import mac_int
from vnet.pipeline.actions import OFPP_CONTROLLER


def without_binding(vlan: int | None) -> State:
    st = model()
    objs: list[Any] = [o for k in st.objects.values() for o in k.values() if o.kind != "neighbour"]
    if vlan is not None:
        objs = [o.changed(vlan=vlan) if o.kind == "network" and o.id == "ext" else o for o in objs]
    return State.of(objs)


@pytest.mark.parametrize("vlan", [None, 100], ids=["flat", "vlan"])
def test_the_upstream_router_is_asked_for_out_of_the_gateway_chassis_uplink(
    vlan: int | None,
) -> None:
    st = without_binding(vlan)
    rig = Rig(st)
    punts = neighbour.punts(Compiler().compile(st))
    pins: dict[str, list[Any]] = {ch: [] for ch in rig.switches}
    for ch, sw in rig.switches.items():
        sw.on_packet_in = pins[ch].append
    rig.send("a1", out_of(1))
    assert not wire(rig) and pins["hv1"] == []  # redirected to hv2, punted there
    (pi,) = pins["hv2"]
    p = punts[pi.cookie]
    assert (p.reason, p.router, p.network, p.nexthop) == ("resolve", "r1", "ext", UP_IP)
    assert (p.mac, p.address) == (GWMAC["r1"], GWIP["r1"])
    out = Neighbours(None, 300).request(st, p, pi.frame)  # type: ignore[arg-type]
    assert out is not None
    frame, acts = out
    rig.switches["hv2"].packet_out(OFPP_CONTROLLER, [*ANSWER, *acts], frame)
    rig.run()
    (req,) = [f for f in wire(rig) if ARP in f]
    assert (req.src, req.dst) == (GWMAC["r1"], "ff:ff:ff:ff:ff:ff")
    assert (req[ARP].op, req[ARP].psrc, req[ARP].pdst) == (1, GWIP["r1"], UP_IP)
    assert (Dot1Q in req) == (vlan is not None)
    if vlan is not None:
        assert req[Dot1Q].vlan == vlan
    assert rig.got("a1") == []  # the request stays outside
    # the upstream answers the gateway, from the physical network, on hv2
    ans: Any = Ether(src=UP_MAC, dst=GWMAC["r1"])
    if vlan is not None:
        ans = ans / Dot1Q(vlan=vlan)
    ans = ans / ARP(op=2, hwsrc=UP_MAC, psrc=UP_IP, hwdst=GWMAC["r1"], pdst=GWIP["r1"])
    rig.from_outside("hv2", bytes(ans))
    (pi2,) = pins["hv2"][1:]
    learn = punts[pi2.cookie]
    assert (learn.reason, learn.router, learn.network, learn.cidr) == (
        "learn", "r1", "ext", "203.0.113.0/24",
    )  # fmt: skip
    assert Neighbours._heard(pi2.frame, 4) == (UP_IP, mac_int(UP_MAC))
    assert IP not in Ether(pi2.frame)


def test_the_upstream_router_is_probed_from_the_active_gateway_chassis_only() -> None:
    st = model(hv1_uplink=True)  # hv1 has the uplink too; hv2 is the active chassis
    (nb,) = st.all("neighbour")
    probes = Neighbours(None, 300, clock=lambda: nb.seen_at + 200).probes(st)  # type: ignore[arg-type]
    ((where, frame, _),) = probes
    assert where == ["hv2"]
    assert (Ether(frame)[ARP].pdst, Ether(frame).src) == (UP_IP, GWMAC["r1"])

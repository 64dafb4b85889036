"""External networks: ports on two chassis joined by the physical network, not tunnels.

Real vnet switches with memory ports; each chassis' uplink (its `physnets`)
is a memory device, and a hub stands for the physical switch: what leaves one
uplink enters the others, as it is (tags and all), and is kept as what the
outside saw.  The tunnels are joined by the simulated underlay, which must
carry nothing of the external network.
"""

from __future__ import annotations

from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Dot1Q, Ether

from vnet.compiler import Compiler, localize
from vnet.compiler.stages import LOCALNET_KEY
from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice, MemoryTunnel
from vnet.lab.underlay import carry
from vnet.model.objects import Chassis, FixedIP, Network, Port, Subnet, Tenant, tunnel_iface
from vnet.model.rules import State
from vnet.packet.addr import ip4_int
from vnet.pipeline.actions import PopVlan, PushVlan, SetField
from vnet.pipeline.fields import lookup
from vnet.pipeline.flow import Flow, FlowMod, FlowModCommand

MAC = {"a": "02:00:00:00:01:0a", "b": "02:00:00:00:01:0b", "c": "02:00:00:00:01:0c"}
IP4 = {"a": "198.51.100.10", "b": "198.51.100.11", "c": "198.51.100.12"}
WHERE = {"a": "hv1", "b": "hv2", "c": "hv1"}
OUTSIDE_MAC = "02:00:00:00:99:01"
UPLINK = "up-phys"


def model(vlan: int | None, ports: tuple[str, ...] = ("a", "b")) -> State:
    objs: list[Any] = [Tenant(id="t", name="t")]
    for i, ch in enumerate(("hv1", "hv2"), 1):
        objs.append(Chassis(id=ch, name=ch, underlay=f"192.0.2.{i}", encap="geneve",
                            physnets={"phys": UPLINK}))  # fmt: skip
    objs.append(Network(id="ext", name="ext", tenant="t", segment_id=77, external=True,
                        physnet="phys", vlan=vlan))  # fmt: skip
    objs.append(Subnet(id="s", name="s", network="ext", tenant="t", cidr="198.51.100.0/24"))
    for k, name in enumerate(ports, 1):
        objs.append(Port(id=name, name=name, network="ext", tenant="t", mac=MAC[name],
                         fixed_ips=[FixedIP(subnet="s", ip=IP4[name])], chassis=WHERE[name],
                         tunnel_key=k))  # fmt: skip
    return State.of(objs)


class Rig:
    def __init__(self, state: State) -> None:
        self.state = state
        lflows = Compiler().compile(state)
        self.switches: dict[str, Switch] = {}
        self.uplinks: dict[str, MemoryDevice] = {}
        self.devices: dict[str, MemoryDevice] = {}
        self.underlay: dict[int, Switch] = {}
        self.outside: list[Ether] = []  # what the physical switch carried
        self.counts: dict[str, int] = {}  # what the underlay carried, per receiving chassis
        for ch in state.all("chassis"):
            sw = Switch(ch.name, fail_mode="secure")
            sw.controller_connected(1)
            tun = MemoryTunnel(tunnel_iface(ch.encap))
            sw.add_port(PortConfig(tun.name, kind=ch.encap, local_ip=ip4_int(ch.underlay), port_security=False), tun)  # fmt: skip
            up = MemoryDevice(UPLINK)
            sw.add_port(PortConfig(UPLINK, kind="memory", port_security=False), up)
            self.switches[ch.id], self.uplinks[ch.id] = sw, up
            self.underlay[ip4_int(ch.underlay)] = sw
        for p in state.all("port"):
            dev = MemoryDevice(p.iface)
            self.switches[p.chassis or ""].add_port(PortConfig(p.iface, kind="memory", port_security=False), dev)  # fmt: skip
            self.devices[p.name] = dev
        for ch in state.all("chassis"):
            sw = self.switches[ch.id]
            ofports = {p.name: no for no, p in sw.ports.items()}
            sw.commit([FlowMod(FlowModCommand.ADD, f) for f in localize(lflows, state, ch, ofports)])  # fmt: skip

    def _inject(self, sw: Switch, iface: str, frame: bytes) -> None:
        port = sw.port_by_name(iface)
        assert port is not None
        sw.receive_batch(port, [(b"", frame)], 1.0)

    def run(self) -> None:
        for _ in range(10):
            moved = carry(self.switches.values(), self.underlay, 1.0, self.counts)
            for cid, up in self.uplinks.items():
                for f in up.frames():
                    moved = True
                    self.outside.append(Ether(f))
                    for other, sw in self.switches.items():
                        if other != cid:
                            self._inject(sw, UPLINK, f)
            if not moved:
                break

    def send(self, name: str, frame: bytes) -> None:
        p = next(p for p in self.state.all("port") if p.name == name)
        self._inject(self.switches[p.chassis or ""], p.iface, frame)
        self.run()

    def from_outside(self, chassis: str, frame: bytes) -> None:
        self._inject(self.switches[chassis], UPLINK, frame)
        self.run()

    def got(self, name: str) -> list[Ether]:
        return [Ether(f) for f in self.devices[name].frames()]


def ping(src: str, dst_mac: str, dst_ip: str) -> bytes:
    return bytes(Ether(src=MAC[src], dst=dst_mac) / IP(src=IP4[src], dst=dst_ip) / ICMP())


def _flows(state: State, chassis: str, uplink: bool = True) -> list[Flow]:
    ch = state.get("chassis", chassis)
    ofports = {tunnel_iface("geneve"): 2, Port(id="a", name="a", network="").iface: 3,
               Port(id="c", name="c", network="").iface: 4}  # fmt: skip
    if uplink:
        ofports[UPLINK] = 1
    return localize(Compiler().compile(state), state, ch, ofports)


def _sets(flows: list[Flow], name: str) -> list[Flow]:
    slot = lookup(name).index
    return [f for f in flows for a in f.instructions.apply
            if isinstance(a, SetField) and a.slot == slot]  # fmt: skip


@pytest.mark.parametrize("vlan", [None, 100], ids=["flat", "vlan"])
def test_ports_on_two_chassis_reach_each_other_by_the_physical_network(vlan: int | None) -> None:
    rig = Rig(model(vlan))
    rig.send("a", ping("a", MAC["b"], IP4["b"]))
    (f,) = rig.got("b")
    assert f.src == MAC["a"] and f[IP].dst == IP4["b"] and Dot1Q not in f
    (wire,) = rig.outside
    assert (Dot1Q in wire) == (vlan is not None)
    if vlan is not None:
        assert wire[Dot1Q].vlan == vlan
    assert all(not t.sent for t in _tunnels(rig))
    assert not rig.got("a")


def _tunnels(rig: Rig) -> list[MemoryTunnel]:
    return [p.device for sw in rig.switches.values() for p in sw.ports.values()
            if isinstance(p.device, MemoryTunnel)]  # fmt: skip


@pytest.mark.parametrize("vlan", [None, 100], ids=["flat", "vlan"])
def test_broadcast_goes_out_of_the_uplink_once_and_to_every_port(vlan: int | None) -> None:
    rig = Rig(model(vlan, ("a", "b", "c")))
    arp = Ether(src=MAC["a"], dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=MAC["a"], psrc=IP4["a"], pdst="198.51.100.1")  # fmt: skip
    rig.send("a", bytes(arp))
    assert len(rig.outside) == 1  # hv1's copy only: hv2 never sends it back out
    assert [f[ARP].pdst for f in rig.got("b")] == ["198.51.100.1"]
    assert [f[ARP].pdst for f in rig.got("c")] == ["198.51.100.1"]
    assert not rig.got("a")
    assert all(not t.sent for t in _tunnels(rig))


@pytest.mark.parametrize("vlan", [None, 100], ids=["flat", "vlan"])
def test_unknown_unicast_goes_to_the_outside(vlan: int | None) -> None:
    rig = Rig(model(vlan))
    rig.send("a", ping("a", OUTSIDE_MAC, "198.51.100.1"))
    (wire,) = rig.outside
    assert wire.dst == OUTSIDE_MAC and (wire[Dot1Q].vlan if vlan else None) == vlan
    assert not rig.got("b")  # hv2 takes it in, finds no port for it


def test_frames_from_the_outside_have_the_tag_popped_and_other_vlans_dropped() -> None:
    rig = Rig(model(100))
    reply = Ether(src=OUTSIDE_MAC, dst=MAC["b"]) / IP(src="198.51.100.1", dst=IP4["b"]) / ICMP(type=0)  # fmt: skip
    rig.from_outside("hv2", bytes(Ether(src=OUTSIDE_MAC, dst=MAC["b"]) / Dot1Q(vlan=100) / reply.payload))  # fmt: skip
    (f,) = rig.got("b")
    assert Dot1Q not in f and f[IP].src == "198.51.100.1"
    rig.from_outside("hv2", bytes(Ether(src=OUTSIDE_MAC, dst=MAC["b"]) / Dot1Q(vlan=101) / reply.payload))  # fmt: skip
    rig.from_outside("hv2", bytes(reply))  # untagged on a VLAN network
    assert not rig.got("b")
    assert not rig.outside  # a frame for a port elsewhere is never sent back out


def test_a_flat_network_drops_tagged_frames() -> None:
    rig = Rig(model(None))
    reply = Ether(src=OUTSIDE_MAC, dst=MAC["b"]) / IP(src="198.51.100.1", dst=IP4["b"]) / ICMP(type=0)  # fmt: skip
    rig.from_outside("hv2", bytes(Ether(src=OUTSIDE_MAC, dst=MAC["b"]) / Dot1Q(vlan=5) / reply.payload))  # fmt: skip
    assert not rig.got("b")
    rig.from_outside("hv2", bytes(reply))
    assert len(rig.got("b")) == 1


def test_a_frame_from_the_outside_for_a_port_elsewhere_is_not_sent_back() -> None:
    rig = Rig(model(None))
    rig.from_outside("hv1", bytes(Ether(src=OUTSIDE_MAC, dst=MAC["b"]) / IP() / ICMP()))
    assert not rig.outside and not rig.got("a")


def test_no_tunnel_flows_for_an_external_network() -> None:
    flows = _flows(model(100, ("a", "b", "c")), "hv1")
    assert not _sets(flows, "tun_dst") and not _sets(flows, "tun_id")
    pushed = [f for f in flows if any(isinstance(a, PushVlan) for a in f.instructions.apply)]
    assert {f.origin.rsplit(" · ", 1)[1] for f in pushed} == {
        "localnet: physnet phys (VLAN 100)",
        "bound to hv2: by the physical network",
    }
    assert any(isinstance(a, PopVlan) for f in flows for a in f.instructions.apply)
    assert any(a.value == LOCALNET_KEY for f in _sets(flows, "reg6")
               for a in f.instructions.apply if isinstance(a, SetField))  # fmt: skip


def test_a_chassis_without_the_uplink_gets_no_localnet_and_no_tunnels() -> None:
    flows = _flows(model(None), "hv1", uplink=False)
    assert not _sets(flows, "tun_dst")  # never a tunnel, even without the uplink
    assert not [f for f in flows if "localnet: physnet" in f.origin]

"""The switch-wide port-security default (`vnet switch run --port-security off`).

A plain OpenFlow switch under an outside controller forwards whatever source
MACs the controller's traffic carries (a select group spread by Ethernet
address, a conformance suite's neighbour solicitations whose link-layer
option is not the frame's source); a port's own `port_security=` still wins.
"""

from __future__ import annotations

from os_ken.lib.packet import ethernet, icmpv6, ipv6, packet

from vnet.datapath import Switch
from vnet.datapath.port import parse_port_spec
from vnet.datapath.ports.memory import MemoryDevice
from vnet.pipeline import parse_flow
from vnet.pipeline.flow import FlowMod, FlowModCommand

from .conftest import udp


def rig(default: bool, *specs: str) -> tuple[Switch, dict[str, MemoryDevice]]:
    sw = Switch("psd", fail_mode="secure")
    devs: dict[str, MemoryDevice] = {}
    for spec in specs:
        cfg = parse_port_spec(spec, kind="memory", port_security=default)
        devs[cfg.name] = MemoryDevice(cfg.name)
        sw.add_port(cfg, devs[cfg.name])
    return sw, devs


def flows(sw: Switch, *texts: str) -> None:
    sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(t).flow) for t in texts])


def send(sw: Switch, name: str, frames: list[bytes]) -> None:
    port = sw.port_by_name(name)
    assert port is not None
    sw.receive_batch(port, [(b"", f) for f in frames], 1.0)


def nd_solicitation() -> bytes:
    """As the OpenFlow 1.3 conformance suite builds it: the option is not the source MAC."""
    p = packet.Packet()
    p.add_protocol(
        ethernet.ethernet(dst="22:22:22:22:22:22", src="12:11:11:11:11:11", ethertype=0x86DD)
    )
    p.add_protocol(ipv6.ipv6(dst="20::20", src="10::10", nxt=58, hop_limit=64))
    body = icmpv6.nd_neighbor(option=icmpv6.nd_option_sla(hw_src="22:22:22:22:22:22"), dst="20::20")
    p.add_protocol(icmpv6.icmpv6(type_=135, code=0, data=body))
    p.serialize()
    return bytes(p.data)


def test_port_security_off_forwards_every_source_mac_and_nd_option() -> None:
    sw, devs = rig(False, "p1", "p2")
    flows(
        sw,
        "priority=10,in_port=1,icmp6,icmpv6_type=135,nd_sll=22:22:22:22:22:22,"
        "actions=set_field:aa:aa:aa:aa:aa:aa->nd_sll,output:2",
        "priority=5,in_port=1,actions=output:2",
    )
    frames = [udp(src, 9) for src in (1, 2, 3, 4)]  # four source MACs on one port
    send(sw, "p1", frames)
    assert devs["p2"].frames() == frames
    send(sw, "p1", [nd_solicitation()])
    (out,) = devs["p2"].frames()
    assert bytes.fromhex("0101aaaaaaaaaaaa") in out
    assert sw.stats()["drops"] == {}


def test_port_security_on_stays_the_default_and_a_port_spec_wins() -> None:
    sw, devs = rig(True, "p1", "p2", "p3,port_security=false")
    flows(sw, "priority=5,in_port=1,actions=output:2", "priority=5,in_port=3,actions=output:2")
    send(sw, "p1", [udp(src, 9) for src in (1, 2)])
    assert len(devs["p2"].frames()) == 1  # locked to the first source MAC
    assert sw.stats()["drops"].get("forged_transmit") == 1
    send(sw, "p3", [udp(src, 9) for src in (1, 2)])
    assert len(devs["p2"].frames()) == 2
    sw2, devs2 = rig(False, "p1,port_security=true", "p2")
    flows(sw2, "priority=5,in_port=1,actions=output:2")
    send(sw2, "p1", [udp(src, 9) for src in (1, 2)])
    assert len(devs2["p2"].frames()) == 1

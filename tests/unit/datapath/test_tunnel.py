"""Tunnel ports in the switch: two switches joined by an in-memory underlay.

The outer packets are the real bytes a tunnel port sends (scapy decodes them);
only the sockets are replaced, so this runs without root.
"""

from __future__ import annotations

import struct

import pytest
from scapy.contrib.geneve import GENEVE
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN

from vnet.datapath import Switch, parse_port_spec
from vnet.datapath.port import PortConfigError
from vnet.datapath.ports.memory import MemoryDevice, MemoryTunnel
from vnet.packet.addr import ip4_int
from vnet.pipeline import parse_flow
from vnet.pipeline.flow import FlowMod, FlowModCommand

VTEP_A, VTEP_B = "192.168.50.1", "192.168.50.2"


class Host:
    def __init__(self, name: str, vtep: str, kind: str, path_mtu: int = 1500) -> None:
        self.sw = Switch(name, fail_mode="secure")
        self.vm = MemoryDevice("vm")
        self.sw.add_port(parse_port_spec("vm,port_security=false", kind="memory"), self.vm)
        self.under = MemoryTunnel("tun", path_mtu)
        self.tun = self.sw.add_port(parse_port_spec(f"tun,kind={kind},local_ip={vtep}"), self.under)  # type: ignore[arg-type]
        self.kind = kind

    def flows(self, *texts: str) -> None:
        self.sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(t).flow) for t in texts])

    def deliver_to(self, other: Host) -> list[bytes]:
        """Hand what this host's tunnel sent to the other's, as its socket would read it."""
        wire = [p for _, p in self.under.sent]
        self.under.sent.clear()
        got = []
        for packet in wire:
            src = int.from_bytes(packet[12:16], "big")
            payload = packet if self.kind == "nvgre" else packet[28:]  # after IPv4 + UDP
            got.append(packet)
            other.sw.receive_tunnel_batch(other.tun, [(src, payload)], 0.0)
        return got


def pair(kind: str, path_mtu: int = 1500) -> tuple[Host, Host]:
    a, b = Host("a", VTEP_A, kind, path_mtu), Host("b", VTEP_B, kind)
    a.flows(f"in_port=1,actions=set_field:5000->tun_id,set_field:{VTEP_B}->tun_dst,output:2")
    b.flows(f"in_port=2,tun_id=5000,tun_src={VTEP_A},actions=output:1")
    return a, b


def frame(size: int = 0, df: bool = True) -> bytes:
    pkt = (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="10.0.0.1", dst="10.0.0.2", flags="DF" if df else 0)
        / ICMP()
    )
    return bytes(pkt / (b"x" * max(0, size - len(pkt))))


@pytest.mark.parametrize("kind", ["vxlan", "geneve", "nvgre"])
def test_a_frame_crosses_the_tunnel_and_is_matched_by_its_metadata(kind: str) -> None:
    a, b = pair(kind)
    f = frame()
    a.sw.receive(a.sw.port_by_name("vm"), b"", f)  # type: ignore[arg-type]
    (outer,) = a.deliver_to(b)
    p = IP(outer)
    assert (p.src, p.dst, p.flags.DF) == (VTEP_A, VTEP_B, True)
    if kind == "vxlan":
        assert p[VXLAN].vni == 5000
    elif kind == "geneve":
        assert GENEVE(bytes(p[UDP].payload)).vni == 5000
    else:
        assert p[GRE].key >> 8 == 5000
    assert b.vm.frames() == [f]
    assert a.tun.stats.tx_packets == 1 and b.tun.stats.rx_packets == 1


def test_another_vni_or_vtep_is_not_matched() -> None:
    a, b = pair("vxlan")
    a.flows(f"priority=40000,in_port=1,actions=set_field:5001->tun_id,set_field:{VTEP_B}->tun_dst,output:2")  # fmt: skip
    a.sw.receive(a.sw.port_by_name("vm"), b"", frame())  # type: ignore[arg-type]
    a.deliver_to(b)
    assert b.vm.frames() == [] and b.sw.drops.get("no_match") == 1


def test_geneve_carries_tun_metadata0_as_an_option() -> None:
    a, b = pair("geneve")
    a.flows(f"priority=40000,in_port=1,actions=set_field:5000->tun_id,set_field:0x10002->tun_metadata0,set_field:{VTEP_B}->tun_dst,output:2")  # fmt: skip
    b.flows("priority=40000,in_port=2,tun_metadata0=0x10002,actions=output:1")
    a.sw.receive(a.sw.port_by_name("vm"), b"", frame())  # type: ignore[arg-type]
    (outer,) = a.deliver_to(b)
    opt = GENEVE(bytes(IP(outer)[UDP].payload)).options[0]
    assert (opt.classid, opt.type, bytes(opt.data)) == (0x0102, 0x80, bytes.fromhex("00010002"))
    assert len(b.vm.frames()) == 1


def test_malformed_underlay_packets_are_counted_by_reason() -> None:
    _, b = pair("vxlan")
    b.sw.receive_tunnel_batch(b.tun, [(ip4_int(VTEP_A), b"\x08\x00")], 0.0)
    b.sw.receive_tunnel_batch(b.tun, [(ip4_int(VTEP_A), bytes(8) + frame())], 0.0)
    assert b.sw.drops == {"tunnel_truncated_vxlan": 1, "tunnel_bad_vxlan": 1}
    assert b.tun.stats.rx_errors == 2 and b.vm.frames() == []


def test_oversize_frames_get_icmp_with_the_overlay_mtu() -> None:
    a, _ = pair("vxlan", path_mtu=1500)
    vm = a.sw.port_by_name("vm")
    assert vm is not None
    a.sw.receive(vm, b"", frame(1450 + 14))  # fits exactly: 1,450 bytes of IP
    assert len(a.under.sent) == 1 and a.vm.frames() == []
    a.sw.receive(vm, b"", frame(1451 + 14))
    (reply,) = a.vm.frames()
    r = Ether(reply)
    assert r.dst == "02:00:00:00:00:01" and r[IP].src == "10.0.0.2" and r[IP].dst == "10.0.0.1"
    assert (r[ICMP].type, r[ICMP].code, r[ICMP].nexthopmtu) == (3, 4, 1450)
    assert a.sw.drops["tunnel_too_big"] == 1 and a.sw.too_big_sent == 1
    # without DF nothing is answered (only counted); IPv6 gets "packet too big"
    a.sw.receive(vm, b"", frame(1600, df=False))
    assert a.vm.frames() == [] and a.sw.drops["tunnel_too_big"] == 2
    v6 = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IPv6(src="fd00::1", dst="fd00::2") / (b"y" * 1500))  # fmt: skip
    a.sw.receive(vm, b"", v6)
    (reply,) = a.vm.frames()
    assert Ether(reply)[ICMPv6PacketTooBig].mtu == 1450


def test_tcp_gso_frames_are_segmented_before_encapsulation() -> None:
    a, b = pair("vxlan")
    data = b"z" * 4000
    big = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2") / TCP() / data)  # fmt: skip
    hdr = struct.pack("<BBHHHH", 1, 1, 54, 1400, 34, 16)
    a.sw.receive(a.sw.port_by_name("vm"), hdr, big)  # type: ignore[arg-type]
    assert len(a.deliver_to(b)) == 3
    assert sum(len(f) - 54 for f in b.vm.frames()) == 4000


def test_tunnel_port_specs() -> None:
    cfg = parse_port_spec("vx,kind=vxlan,local_ip=192.168.0.1,csum=false")
    assert cfg.tunnel and not cfg.port_security and not cfg.udp_csum
    with pytest.raises(PortConfigError, match="local_ip"):
        parse_port_spec("vx,kind=geneve")
    with pytest.raises(PortConfigError, match="local_ip"):
        parse_port_spec("veth0,local_ip=192.168.0.1")
    with pytest.raises(PortConfigError, match="kind"):
        parse_port_spec("vx,kind=stt,local_ip=192.168.0.1")

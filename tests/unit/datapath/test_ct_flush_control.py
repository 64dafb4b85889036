"""Flushing chosen connections: by zone and original tuple, as dpctl/flush-conntrack."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from vnet.datapath import PortConfig, Switch
from vnet.datapath.control import ControlServer
from vnet.datapath.ports.memory import MemoryDevice
from vnet.datapath.runner import Runner
from vnet.datapath.switch import SwitchError
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.ofctl import parse_flow

FLOWS = (
    "table=0,in_port=1,ip,actions=ct(commit,zone=1),output:2",
    "table=0,in_port=1,ipv6,actions=ct(commit,zone=1),output:2",
    "table=0,in_port=2,ip,actions=ct(commit,zone=2),output:1",
)


def server(tmp_path: Path) -> ControlServer:
    sw = Switch("sw", fail_mode="secure")
    for name in ("a", "b"):
        sw.add_port(PortConfig(name=name, kind="memory", port_security=False), MemoryDevice(name))
    sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(f).flow) for f in FLOWS])
    return ControlServer(Runner(sw), str(tmp_path / "sw.ctl"))


def send(ctl: ControlServer, port: str, p: Packet) -> None:
    sw = ctl.runner.switch
    dev = sw.port_by_name(port)
    assert dev is not None
    sw.receive(dev, b"", bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / p))


def four(ctl: ControlServer) -> None:
    """Two TCP connections and a UDP one in zone 1, an ICMP echo in zone 2, one IPv6 in 1."""
    send(ctl, "a", IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80, flags="S"))
    send(ctl, "a", IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40001, dport=80, flags="S"))
    send(ctl, "a", IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=53))
    send(ctl, "b", IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=8, id=7))
    send(ctl, "a", IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=40000, dport=80, flags="S"))


def test_a_tuple_flushes_only_the_connection_it_names(tmp_path: Path) -> None:
    ctl = server(tmp_path)
    four(ctl)
    assert len(ctl.ct_dump({})) == 5
    t = "ct_nw_src=10.0.0.1,ct_nw_dst=10.0.0.2,ct_nw_proto=6,ct_tp_src=40000,ct_tp_dst=80"
    assert ctl.ct_flush({"zone": 2, "tuple": t}) == {"flushed": 0}  # not in that zone
    assert ctl.ct_flush({"zone": 1, "tuple": t}) == {"flushed": 1}
    left = ctl.ct_dump({})
    assert len(left) == 4 and not any("sport=40000,dport=80),reply" in x and "tcp," in x for x in left)  # fmt: skip
    assert any("tcp6," in x for x in left)  # the IPv6 one with the same ports stays


def test_a_partial_tuple_flushes_all_it_matches(tmp_path: Path) -> None:
    ctl = server(tmp_path)
    four(ctl)
    assert ctl.ct_flush({"tuple": "ct_nw_proto=6,ct_tp_dst=80"}) == {"flushed": 3}
    assert ctl.ct_flush({"tuple": "ct_nw_proto=1,icmp_id=7,icmp_type=8,icmp_code=0"}) == {
        "flushed": 1
    }
    assert ctl.ct_flush({"tuple": "ct_ipv6_src=fd00::1"}) == {"flushed": 0}
    (line,) = ctl.ct_dump({})
    assert line.startswith("udp,")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("ct_nw_src=10.0.0.300", "ct_nw_src"),
        ("ct_tp_dst=70000", "ct_tp_dst"),
        ("nw_src=10.0.0.1", "nw_src"),
        ("ct_nw_src=10.0.0.1,ct_ipv6_dst=fd00::2", "mixed"),
        ("", "tuple"),
    ],
)
def test_a_bad_tuple_is_refused_naming_the_field_and_flushes_nothing(
    tmp_path: Path, text: str, words: str
) -> None:
    ctl = server(tmp_path)
    four(ctl)
    with pytest.raises(SwitchError, match=words):
        ctl.ct_flush({"tuple": text})
    assert len(ctl.ct_dump({})) == 5

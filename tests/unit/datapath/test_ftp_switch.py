"""ct(alg=ftp) in the switch, through source NAT: an in-process switch with memory ports.

Port a is the client's side (10.0.0.1, leaving as 192.0.2.1), port b the
server's (10.0.0.2).  The client's PORT reaches the server naming the
translated address, the segments after it are renumbered, and the server's
data connection to the translated address reaches the client -- recirculated
and in place, with checksums finished in software or left to the device.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from tests.checksums import bad_checksums
from vnet.datapath import offload
from vnet.packet.addr import ip4_int
from vnet.packet.checksum import internet_checksum, pseudo_header_v4
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.ofctl import parse_flow

from .conftest import Rig, mac

A, B, X = "10.0.0.1", "10.0.0.2", "192.0.2.1"
RECIRC = [
    "table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1,zone=1,nat)",
    "table=1,priority=20,in_port=1,tcp,tp_dst=21,ct_state=+new+trk,actions=ct(commit,zone=1,alg=ftp,nat(src=192.0.2.1)),output:2",
    "table=1,priority=10,in_port=2,ip,ct_state=+new+rel+trk,actions=ct(commit,zone=1,nat),output:1",
    "table=1,priority=10,in_port=1,ip,ct_state=+est+trk,actions=output:2",
    "table=1,priority=10,in_port=2,ip,ct_state=+est+trk,actions=output:1",
]
IN_PLACE = [
    "priority=10,in_port=1,ip,actions=ct(commit,zone=1,alg=ftp,nat(src=192.0.2.1)),output:2",
    "priority=10,in_port=2,ip,actions=ct(commit,zone=1,nat),output:1",
]
PORT = b"PORT 10,0,0,1,4,1\r\n"


def switch(rig: Callable[..., Rig], flows: list[str]) -> Rig:
    r = rig(fail_mode="secure")
    r.port("a", port_security=False)
    r.port("b", port_security=False)
    r.sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(t).flow) for t in flows])
    return r


def seg(src: str, dst: str, sport: int, dport: int, flags: str, seq: int, ack: int = 0,
        data: bytes = b"", out: bool = True) -> bytes:  # fmt: skip
    macs = (mac(1), mac(2)) if out else (mac(2), mac(1))
    return bytes(
        Ether(src=macs[0], dst=macs[1])
        / IP(src=src, dst=dst)
        / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=65535)
        / data
    )


def received(r: Rig, port: str) -> list[Ether]:
    frames = r.got(port)
    for f in frames:
        assert bad_checksums(f) == []
    return [Ether(f) for f in frames]


def left_to_the_device(frame: bytes) -> tuple[bytes, bytes]:
    """The frame as a stack with checksum offload hands it over: the TCP checksum field
    holds the pseudo-header sum, and a virtio-net header says where to finish it."""
    buf = bytearray(frame)
    n = len(buf) - 34
    partial = ~internet_checksum(pseudo_header_v4(ip4_int(A), ip4_int(B), 6, n)) & 0xFFFF
    struct.pack_into("!H", buf, 34 + 16, partial)
    hdr = struct.pack("<BBHHHH", offload.F_NEEDS_CSUM, 0, 0, 0, 34, 16)
    return hdr, bytes(buf)


@pytest.mark.parametrize("partial", [False, True], ids=["whole", "needs_csum"])
@pytest.mark.parametrize("flows", [RECIRC, IN_PLACE], ids=["recirculated", "in_place"])
def test_active_ftp_through_source_nat(
    rig: Callable[..., Rig], flows: list[str], partial: bool
) -> None:
    r = switch(rig, flows)
    a = r.sw.port_by_name("a")
    assert a is not None
    r.send("a", seg(A, B, 40000, 21, "S", 100))
    (syn,) = received(r, "b")
    assert syn[IP].src == X
    r.send("b", seg(B, X, 21, 40000, "SA", 500, 101, out=False))
    assert len(received(r, "a")) == 1
    frame = seg(A, B, 40000, 21, "PA", 101, 501, PORT)
    hdr = b""
    if partial:
        hdr, frame = left_to_the_device(frame)
    r.sw.receive_batch(a, [(hdr, frame)], 1.0)
    (cmd,) = received(r, "b")
    assert cmd[IP].src == X and bytes(cmd[TCP].payload) == b"PORT 192,0,2,1,4,1\r\n"
    grown = len("192,0,2,1") - len("10,0,0,1")
    end = 101 + len(PORT)
    r.send("b", seg(B, X, 21, 40000, "PA", 501, end + grown, b"200 OK\r\n", out=False))
    (ok,) = received(r, "a")
    assert ok[TCP].ack == end  # back in the client's numbering
    r.send("a", seg(A, B, 40000, 21, "PA", end, 509, b"RETR f\r\n"))
    (retr,) = received(r, "b")
    assert retr[TCP].seq == end + grown
    r.send("b", seg(B, X, 20, 1025, "S", 900, out=False))  # the server connects back
    (data,) = received(r, "a")
    assert (data[IP].src, data[IP].dst, data[TCP].dport) == (B, A, 1025)

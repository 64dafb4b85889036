"""ct(alg=ftp) in the switch, through source NAT: an in-process switch with memory ports.

Port a is the client's side (10.0.0.1, leaving as 192.0.2.1), port b the
server's (10.0.0.2).  The client's PORT reaches the server naming the
translated address, the segments after it are renumbered, and the server's
data connection to the translated address reaches the client -- recirculated
and in place, with checksums finished in software or left to the device.
"""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import IP, TCP

from vnet.datapath import offload
from vnet.packet.addr import ip4_int
from vnet.packet.checksum import internet_checksum, pseudo_header_v4

from .conftest import A, B, TwoPorts, X, tcp

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
    two_ports: TwoPorts, flows: list[str], partial: bool
) -> None:
    r = two_ports(flows)
    a = r.sw.port_by_name("a")
    assert a is not None
    r.send("a", tcp(A, B, 40000, 21, "S", 100))
    (syn,) = r.received("b")
    assert syn[IP].src == X
    r.send("b", tcp(B, X, 21, 40000, "SA", 500, 101, out=False))
    assert len(r.received("a")) == 1
    frame = tcp(A, B, 40000, 21, "PA", 101, 501, PORT)
    hdr = b""
    if partial:
        hdr, frame = left_to_the_device(frame)
    r.sw.receive_batch(a, [(hdr, frame)], 1.0)
    (cmd,) = r.received("b")
    assert cmd[IP].src == X and bytes(cmd[TCP].payload) == b"PORT 192,0,2,1,4,1\r\n"
    grown = len("192,0,2,1") - len("10,0,0,1")
    end = 101 + len(PORT)
    r.send("b", tcp(B, X, 21, 40000, "PA", 501, end + grown, b"200 OK\r\n", out=False))
    (ok,) = r.received("a")
    assert ok[TCP].ack == end  # back in the client's numbering
    r.send("a", tcp(A, B, 40000, 21, "PA", end, 509, b"RETR f\r\n"))
    (retr,) = r.received("b")
    assert retr[TCP].seq == end + grown
    r.send("b", tcp(B, X, 20, 1025, "S", 900, out=False))  # the server connects back
    (data,) = r.received("a")
    assert (data[IP].src, data[IP].dst, data[TCP].dport) == (B, A, 1025)

"""The AF_PACKET port device on a real veth: rings, frames larger than a slot, order.

The far end of the veth lives in a namespace the test created; what it sends
and hears is read there by `vnet.testing.rawio` (a plain socket, no rings),
so the ring device is checked against an independent reader and writer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from vnet.datapath.ports.af_packet import SLOT, AfPacketDevice
from vnet.testing.netns import Lab, run

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

SRC, DST = "02:00:00:00:a1:01", "02:00:00:00:a1:02"


@pytest.fixture
def wire() -> Iterator[tuple[Lab, str, str, str]]:
    """(lab, namespace, device end in this namespace, far end in the namespace); MTU 9000."""
    with Lab() as lab:
        ns = lab.ns("ap")
        # the far end sends nothing by itself (no IPv6 chatter): every frame is the test's
        lab.exec(
            ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        )  # fmt: skip
        here, there = lab.veth("ap", ns, mac=DST)
        run("ip", "link", "set", here, "mtu", "9000")
        run("ip", "-n", ns, "link", "set", there, "mtu", "9000")
        yield lab, ns, here, there


def frame(n: int, tag: int | None = None, payload: int = 18) -> bytes:
    l2 = Ether(src=SRC, dst=DST)
    if tag is not None:
        l2 = l2 / Dot1Q(vlan=tag)
    pkt = l2 / IP(src="10.66.0.1", dst="10.66.0.2", id=n) / UDP(sport=4000, dport=9)
    return bytes(pkt / bytes(payload))


def received(dev: AfPacketDevice, want: int, timeout: float = 5.0) -> list[bytes]:
    got: list[bytes] = []
    end = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end:
        got += [f for _, f in dev.recv_batch(64)]
        time.sleep(0.005)
    return got


def listen(lab: Lab, ns: str, iface: str, seconds: float) -> subprocess.Popen[bytes]:
    p = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "vnet.testing.rawio", iface,
         "--listen", str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    lab.defer(lambda: p.kill() if p.poll() is None else None)
    assert p.stderr is not None and p.stderr.readline().strip() == b"listening"
    return p


def heard(p: subprocess.Popen[bytes]) -> list[bytes]:
    out, _ = p.communicate(timeout=30)
    return [bytes.fromhex(line) for line in out.decode().split()]


def udp_frames(frames: list[bytes]) -> list[bytes]:
    return [f for f in frames if f[12:14] in (b"\x08\x00", b"\x81\x00")]


def test_ring_sends_in_order_across_slot_sizes(wire: tuple[Lab, str, str, str]) -> None:
    lab, ns, here, there = wire
    dev = AfPacketDevice(here, vnet_hdr=True)
    assert dev._ring is not None, "the socket should have its rings"
    sizes = [18, 5000, 18, 18, 8000, 18]  # small ones through the ring, big ones around it
    sent = [frame(i, payload=s) for i, s in enumerate(sizes)]
    assert len(sent[1]) > SLOT and len(sent[0]) < SLOT
    p = listen(lab, ns, there, 2.0)
    for f in sent:
        assert dev.send(b"", f)
    dev.flush()
    assert udp_frames(heard(p)) == sent
    dev.close()


def test_ring_receives_small_big_and_tagged(wire: tuple[Lab, str, str, str]) -> None:
    lab, ns, here, there = wire
    dev = AfPacketDevice(here, vnet_hdr=True)
    assert dev._ring is not None
    sent = [frame(1), frame(2, payload=6000), frame(3, tag=42), frame(4)]
    cmd = [sys.executable, "-m", "vnet.testing.rawio", there]
    for f in sent:
        cmd += ["--send", f.hex()]
    lab.exec(ns, *cmd)
    got = udp_frames(received(dev, len(sent)))
    assert got == sent  # whole, in order, the VLAN tag put back where it was
    dev.close()


def test_ring_keeps_receiving_after_overflow(wire: tuple[Lab, str, str, str]) -> None:
    """More frames than the ring holds, unread: the surplus is counted, then it works again."""
    lab, ns, here, there = wire
    dev = AfPacketDevice(here, vnet_hdr=True)
    burst = 3000  # the ring holds 1,024
    script = (
        "import socket,sys\n"
        "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n"
        f"s.bind(({there!r},0))\n"
        f"f=bytes.fromhex({frame(0).hex()!r})\n"
        f"for _ in range({burst}): s.send(f)\n"
    )
    lab.exec(ns, sys.executable, "-c", script)
    first = udp_frames(received(dev, burst, timeout=2.0))
    _, drops = dev.stats()
    assert 0 < len(first) < burst
    assert len(first) + drops == burst  # nothing lost without a count
    later = [frame(9), frame(10)]
    cmd = [sys.executable, "-m", "vnet.testing.rawio", there]
    for f in later:
        cmd += ["--send", f.hex()]
    lab.exec(ns, *cmd)
    assert udp_frames(received(dev, 2)) == later
    dev.close()

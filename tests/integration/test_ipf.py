"""Fragmented datagrams through the stateful firewall, on real namespaces: vnet and Open vSwitch.

The hosts' MTU is 1300, so their kernels cut a 5,000-byte UDP datagram or a
3,000-byte ping into fragments.  The firewall of `test_firewall` tracks
every IP packet; the switch reassembles each datagram for the tracker and
sends the original fragments on.  A's datagram arrives whole at B's socket,
B's answer (established) comes back whole, and a datagram B starts is
refused as a whole -- not one fragment of it reaches A.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from vnet.testing.netns import Lab

from .switch_rig import cabled_hosts, py
from .test_firewall import MAC_A, MAC_B, A, B, switch

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

MTU = 1300
SIZE = 5000
PORT = 9000

# answers each datagram with one of the same size, and prints what it got
SERVER = """
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    d, peer = s.recvfrom(65535)
    print(len(d), hashlib.sha256(d).hexdigest(), flush=True)
    s.sendto(bytes(reversed(d)), peer)
"""
# sends one big datagram, prints the size of the answer (or fails on a timeout)
CLIENT = """
import socket, sys
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(3)
c.bind((sys.argv[1], 0))
data = bytes(i % 251 for i in range(int(sys.argv[4])))
c.sendto(data, (sys.argv[2], int(sys.argv[3])))
d, _ = c.recvfrom(65535)
assert d == bytes(reversed(data)), "the answer is not the datagram reversed"
print(len(d), flush=True)
"""


@pytest.mark.parametrize("kind", ["vnet", "ovs"])
def test_fragmented_datagrams_pass_whole_or_not_at_all(lab: Lab, tmp_path: Path, kind: str) -> None:
    hosts, ports, _ = cabled_hosts(lab, "g", [(A, MAC_A), (B, MAC_B)], mtu=MTU)
    _target, sw = switch(kind, lab, tmp_path, ports)
    # ping: 3,000 bytes each way, in three fragments
    ping = ("ping", "-c", "2", "-i", "0.2", "-W", "1", "-s", "3000")
    assert lab.exec(hosts[0], *ping, B, check=False).returncode == 0
    assert lab.exec(hosts[1], *ping, A, check=False).returncode != 0

    srv_b = py(lab, hosts[1], SERVER, B, str(PORT))
    srv_a = py(lab, hosts[0], SERVER, A, str(PORT))
    for s in (srv_a, srv_b):
        assert s.stdout is not None and s.stdout.readline().strip() == "listening"
    # A -> B: the datagram arrives whole, the answer comes back whole
    cli = py(lab, hosts[0], CLIENT, A, B, str(PORT), str(SIZE))
    assert cli.wait(20) == 0, cli.stderr.read() if cli.stderr else ""
    assert cli.stdout is not None and cli.stdout.read().strip() == str(SIZE)
    assert srv_b.stdout is not None
    want = hashlib.sha256(bytes(i % 251 for i in range(SIZE))).hexdigest()
    assert srv_b.stdout.readline().split() == [str(SIZE), want]
    # B -> A: a new datagram from B is refused, every fragment of it
    back = py(lab, hosts[1], CLIENT, B, A, str(PORT), str(SIZE))
    assert back.wait(20) != 0 and "timed out" in (back.stderr.read() if back.stderr else "")
    srv_a.kill()
    assert srv_a.stdout is not None and srv_a.stdout.read() == ""  # nothing reached A
    if sw is not None:
        stats = sw.ctl("ct-stats")["ipf"]
        # whole datagrams: ping's first request twice (at ct(table=1), then at
        # ct(commit)), its second request and both replies once, B's two requests
        # once (3 fragments each); the UDP datagram twice, its answer and B's
        # datagram once (4 fragments each)
        assert stats["v4"]["reassembled"] == 2 + 3 + 2 + 2 + 1 + 1
        assert stats["v4"]["completed"] == 3 * 7 + 4 * 4 == stats["v4"]["accepted"]
        assert stats["fragments"] == 0
        text = sw.vnet("ct", "stats", sw.name)
        assert "fragments (v4): accepted 37, completed 37, reassembled 11; drops: none" in text
        assert not any(k.startswith("ipf_") for k in sw.drops())

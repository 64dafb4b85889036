"""NAT on real namespaces: one flow file on vnet and on Open vSwitch netdev, the same result.

Inside host A (port 1) and outside host B (port 2) share a subnet; the
translated addresses are two more in it, which each host reaches through a
static neighbour entry (no one answers ARP for them).  The classic flows,
added with `vnet ofctl add-flow`: untracked IP goes through `ct(nat)` to
table 1; a new connection is committed there with `nat(src=...)` (SNAT: A's
connections leave from X) or `nat(dst=...)` (DNAT: B's connections to V
reach A), established traffic passes both ways.  What the far side sees is
the judge: the server's socket names the translated peer, the client gets
its echo, ping works through the translation, and the connection table --
`vnet ct dump` and `ovs-appctl dpctl/dump-conntrack` -- reads the same.
Transmit checksum offload is off in the namespaces, as Open vSwitch's
userspace tracker needs.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from vnet.testing.netns import Lab, run

from .switch_rig import ECHO_SERVER, SwitchRig, cabled_hosts, programmed_switch, py

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

A, B = "10.79.0.1", "10.79.0.2"
X, V = "10.79.0.100", "10.79.0.200"  # A's connections leave from X; B reaches A at V
MAC_A, MAC_B = "02:00:00:00:79:01", "02:00:00:00:79:02"
ARP = """\
table=0,priority=10,arp,in_port=1,actions=output:2
table=0,priority=10,arp,in_port=2,actions=output:1
"""
SNAT = f"""\
table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1,zone=1,nat)
{ARP}table=1,priority=10,in_port=1,ip,ct_state=+new+trk,actions=ct(commit,zone=1,nat(src={X})),output:2
table=1,priority=10,in_port=1,ip,ct_state=+est+trk,actions=output:2
table=1,priority=10,in_port=2,ip,ct_state=+est+trk,actions=output:1
"""
DNAT = f"""\
table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1,zone=2,nat)
{ARP}table=1,priority=10,in_port=2,tcp,nw_dst={V},tp_dst=80,ct_state=+new+trk,actions=ct(commit,zone=2,nat(dst={A}:8080)),output:1
table=1,priority=10,in_port=2,icmp,nw_dst={V},ct_state=+new+trk,actions=ct(commit,zone=2,nat(dst={A})),output:1
table=1,priority=10,in_port=2,ip,ct_state=+est+trk,actions=output:1
table=1,priority=10,in_port=1,ip,ct_state=+est+trk,actions=output:2
"""
CLIENT_PORT = 40002

# client: one exchange from a fixed port; says where its socket is connected
CLIENT = """
import socket, sys
c = socket.socket(); c.bind((sys.argv[1], int(sys.argv[2]))); c.settimeout(5)
c.connect((sys.argv[3], int(sys.argv[4])))
c.sendall(b"hello"); assert c.recv(100) == b"hello"
print("echo %s %d" % c.getpeername(), flush=True)
"""


def setup(kind: str, lab: Lab, tmp: Path, flows: str) -> tuple[list[str], SwitchRig | None]:
    """Hosts A and B on the switch under test, programmed with `flows`."""
    hosts, ports, peers = cabled_hosts(lab, "n", [(A, MAC_A), (B, MAC_B)])
    # the translated addresses are reached through the switch, at the other host's MAC
    run("ip", "-n", hosts[0], "neigh", "replace", V, "lladdr", MAC_B, "dev", peers[0])
    run("ip", "-n", hosts[1], "neigh", "replace", X, "lladdr", MAC_A, "dev", peers[1])
    run("ip", "-n", hosts[1], "neigh", "replace", V, "lladdr", MAC_A, "dev", peers[1])
    _, sw = programmed_switch(kind, lab, tmp, ports, flows.splitlines())
    return hosts, sw


def conntrack(sw: SwitchRig | None, tmp: Path, zone: int) -> str:
    """The connection table, as `vnet ct dump` or `ovs-appctl dpctl/dump-conntrack` say."""
    if sw is not None:
        return sw.vnet("ct", "dump", sw.name, "--zone", str(zone))
    r = subprocess.run(["ovs-appctl", f"--target={tmp}/vswitchd.ctl", "dpctl/dump-conntrack",
                        f"zone={zone}"], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout


def serve(lab: Lab, ns: str, addr: str, port: int) -> subprocess.Popen[str]:
    srv = py(lab, ns, ECHO_SERVER, addr, str(port))
    assert srv.stdout is not None and srv.stdout.readline().strip() == "listening"
    return srv


def connect(lab: Lab, ns: str, src: str, dst: str, port: int) -> str:
    cli = py(lab, ns, CLIENT, src, str(CLIENT_PORT), dst, str(port))
    assert cli.wait(20) == 0, cli.stderr.read() if cli.stderr else ""
    return cli.stdout.read().strip() if cli.stdout else ""


PING = ("ping", "-c", "2", "-i", "0.2", "-W", "2")


@pytest.mark.parametrize("kind", ["vnet", "ovs"])
def test_source_nat(lab: Lab, tmp_path: Path, kind: str) -> None:
    (a, b), sw = setup(kind, lab, tmp_path, SNAT)
    assert lab.exec(a, *PING, B, check=False).returncode == 0  # through the translation
    srv = serve(lab, b, B, 8080)
    assert connect(lab, a, A, B, 8080) == f"echo {B} 8080"
    assert srv.stdout is not None
    assert srv.stdout.readline().strip() == f"peer {X} {CLIENT_PORT}"  # B sees X, not A
    assert lab.exec(b, *PING, A, check=False).returncode != 0  # A is not reachable from B
    table = conntrack(sw, tmp_path, 1)
    tcp = (f"tcp,orig=(src={A},dst={B},sport={CLIENT_PORT},dport=8080),"
           f"reply=(src={B},dst={X},sport=8080,dport={CLIENT_PORT})")  # fmt: skip
    assert tcp in table, table
    assert re.search(rf"icmp,orig=\(src={A},dst={B},id=\d+,type=8,code=0\),"
                     rf"reply=\(src={B},dst={X},id=\d+,type=0,code=0\)", table), table  # fmt: skip


@pytest.mark.parametrize("kind", ["vnet", "ovs"])
def test_destination_nat(lab: Lab, tmp_path: Path, kind: str) -> None:
    (a, b), sw = setup(kind, lab, tmp_path, DNAT)
    assert lab.exec(b, *PING, V, check=False).returncode == 0  # A answers for V
    srv = serve(lab, a, A, 8080)
    assert connect(lab, b, B, V, 80) == f"echo {V} 80"  # the client spoke to V:80 throughout
    assert srv.stdout is not None
    assert srv.stdout.readline().strip() == f"peer {B} {CLIENT_PORT}"  # A:8080 got it from B
    table = conntrack(sw, tmp_path, 2)
    tcp = (f"tcp,orig=(src={B},dst={V},sport={CLIENT_PORT},dport=80),"
           f"reply=(src={A},dst={B},sport=8080,dport={CLIENT_PORT})")  # fmt: skip
    assert tcp in table, table
    if sw is not None:
        assert "ct_nat" not in sw.vnet("ct", "stats", sw.name)  # nothing refused

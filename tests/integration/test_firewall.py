"""A stateful firewall in plain OpenFlow, on real namespaces: vnet and Open vSwitch alike.

The classic pipeline, added with `vnet ofctl add-flow` to a vnet switch and
to Open vSwitch's userspace datapath: untracked IP goes through the tracker
to table 1; a new connection may start only from A (port 1); established
traffic passes both ways; anything invalid is dropped.  Both must give the
same verdicts: A reaches B, B does not reach A, replies pass, and a forged
out-of-window RST from B's side is dropped by the `+inv` flow (its counter,
read with `ovs-ofctl`) while the connection carries on.  Transmit checksum
offload is off in the namespaces, as Open vSwitch's userspace tracker needs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from vnet.testing.netns import Lab

from .switch_rig import ECHO_SERVER, SwitchRig, cabled_hosts, programmed_switch, py

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

A, B = "10.78.0.1", "10.78.0.2"
MAC_A, MAC_B = "02:00:00:00:78:01", "02:00:00:00:78:02"
FIREWALL = """\
table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1,zone=1)
table=0,priority=10,arp,in_port=1,actions=output:2
table=0,priority=10,arp,in_port=2,actions=output:1
table=1,priority=10,in_port=1,ip,ct_state=+new+trk,actions=ct(commit,zone=1),output:2
table=1,priority=10,in_port=1,ip,ct_state=+est+trk,actions=output:2
table=1,priority=10,in_port=2,ip,ct_state=+est+trk,actions=output:1
table=1,priority=20,ip,ct_state=+inv+trk,actions=drop
"""
CLIENT_PORT, SERVER_PORT = 40001, 8080

# client: one exchange, a pause (the test forges a RST meanwhile), another exchange
CLIENT = """
import socket, sys, time
c = socket.socket(); c.bind((sys.argv[1], int(sys.argv[2]))); c.settimeout(3)
c.connect((sys.argv[3], int(sys.argv[4])))
c.sendall(b"one"); assert c.recv(100) == b"one"
print("first", flush=True); time.sleep(float(sys.argv[5]))
c.sendall(b"two"); assert c.recv(100) == b"two"
print("second", flush=True)
"""


def ofctl(target: str, *args: str) -> str:
    exe = shutil.which("ovs-ofctl")
    assert exe, "ovs-ofctl missing: `make test` installs openvswitch-common"
    r = subprocess.run([exe, "-O", "OpenFlow13", args[0], target, *args[1:]],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout


def switch(kind: str, lab: Lab, tmp: Path, ports: list[str]) -> tuple[str, SwitchRig | None]:
    """The switch under test, programmed with the firewall; its OpenFlow target."""
    return programmed_switch(kind, lab, tmp, ports, FIREWALL.splitlines())


def inv_packets(target: str) -> int:
    m = re.search(r"n_packets=(\d+).*ct_state=\+inv\+trk", ofctl(target, "dump-flows"))
    assert m, ofctl(target, "dump-flows")
    return int(m[1])


@pytest.mark.parametrize("kind", ["vnet", "ovs"])
def test_stateful_firewall_gives_the_same_verdicts(lab: Lab, tmp_path: Path, kind: str) -> None:
    hosts, ports, _ = cabled_hosts(lab, "f", [(A, MAC_A), (B, MAC_B)])
    target, sw = switch(kind, lab, tmp_path, ports)
    ping = ("ping", "-c", "2", "-i", "0.2", "-W", "1")
    assert lab.exec(hosts[0], *ping, B, check=False).returncode == 0  # A -> B, replies pass
    assert lab.exec(hosts[1], *ping, A, check=False).returncode != 0  # B -> A refused
    srv_b = py(lab, hosts[1], ECHO_SERVER, B, str(SERVER_PORT))
    srv_a = py(lab, hosts[0], ECHO_SERVER, A, str(SERVER_PORT))
    for s in (srv_a, srv_b):
        assert s.stdout is not None and s.stdout.readline().strip() == "listening"
    # B -> A: the SYN is dropped, the connection times out
    back = py(lab, hosts[1], CLIENT, B, str(CLIENT_PORT), A, str(SERVER_PORT), "0")
    assert back.wait(20) != 0 and "timed out" in (back.stderr.read() if back.stderr else "")
    # A -> B: works; a forged RST from B's side in the pause is invalid and dropped
    cli = py(lab, hosts[0], CLIENT, A, str(CLIENT_PORT), B, str(SERVER_PORT), "2")
    assert cli.stdout is not None
    assert cli.stdout.readline().strip() == "first", cli.stderr.read() if cli.stderr else ""
    assert inv_packets(target) == 0
    rst = (
        Ether(src=MAC_B, dst=MAC_A)
        / IP(src=B, dst=A)
        / TCP(sport=SERVER_PORT, dport=CLIENT_PORT, flags="R", seq=0x12345678)
    )
    lab.exec(hosts[1], sys.executable, "-m", "vnet.testing.rawio", lab.name("pf1"),
             "--send", bytes(rst).hex())  # fmt: skip
    time.sleep(0.3)
    assert inv_packets(target) == 1
    assert cli.wait(20) == 0, cli.stderr.read() if cli.stderr else ""
    assert cli.stdout.read().strip() == "second"  # the connection carried on
    if sw is not None:  # what the tracker holds, as dpctl/dump-conntrack and friends say
        dump = sw.vnet("ct", "dump", sw.name, "--zone", "1")
        assert f"tcp,orig=(src={A},dst={B},sport={CLIENT_PORT},dport={SERVER_PORT})" in dump
        assert "icmp,orig=" in dump and "zone=1" in dump
        assert sw.vnet("ct", "dump", sw.name, "--zone", "2").strip() == ""
        stats = sw.vnet("ct", "stats", sw.name)
        assert "ct_invalid 1" in stats and "by zone: 1 " in stats
        assert "connections flushed" in sw.vnet("ct", "flush", sw.name)
        assert "connections: 0 " in sw.vnet("ct", "stats", sw.name)
        bad = sw.vnet("ct", "dump", sw.name, "--zone", "70000", check=False)
        assert "--zone" in bad

"""Gateway failover between Open vSwitch chassis, watched by a vnet chassis, on real namespaces.

hv1 runs the vnet switch and holds the workload (no uplink: its floating IP
is translated by the active gateway, never distributed); hv2 and hv3 run Open
vSwitch (`switch: ovs`) and are the router's gateway chassis, in that order.
The controller runs BFD between all three as OVN does on Open vSwitch -- a
tunnel port per peer with `bfd:enable=true`, key 0, its `bfd_status` read
back over OVSDB -- and vnet's BFD_CONFIG on hv1.  Once every session is
reported up, hv2's ovs-vswitchd is killed: hv1 (vnet) and hv3 (Open vSwitch)
see it down, the gateway becomes active on hv3, which announces the
gateway's and the floating IP's addresses out of its uplink, and the
outside's pings to the floating IP come back within 3 s.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from vnet.lab.real import Lab

from .labrig import running_lab
from .test_failover import FIP, _all_up, _bfd

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs openvswitch-switch"),
]


def topology() -> dict[str, Any]:
    return {
        "tenants": [{"name": "ops"}, {"name": "t1"}],
        "chassis": [
            {"name": "hv1", "physnets": {}},
            {"name": "hv2", "switch": "ovs"},
            {"name": "hv3", "switch": "ovs"},
        ],
        "networks": [
            {"name": "public", "tenant": "ops", "external": True, "physnet": "phys"},
            {"name": "net", "tenant": "t1"},
        ],
        "subnets": [
            {
                "name": "pub4",
                "tenant": "ops",
                "network": "public",
                "cidr": "198.51.100.0/24",
                "gateway": "198.51.100.1",
            },
            {"name": "v4", "tenant": "t1", "network": "net", "cidr": "10.0.1.0/24"},
        ],
        "ports": [
            {
                "name": "web",
                "tenant": "t1",
                "network": "net",
                "chassis": "hv1",
                "fixed_ips": [{"subnet": "v4", "ip": "10.0.1.20"}],
            }
        ],
        "routers": [
            {
                "name": "r",
                "tenant": "t1",
                "interfaces": [{"subnet": "v4"}],
                "routes": [{"cidr": "0.0.0.0/0", "nexthop": "198.51.100.1"}],
                "gateway": {"network": "public", "chassis": ["hv2", "hv3"]},
            }
        ],
        "floating_ips": [
            {"name": "f", "tenant": "t1", "network": "public", "ip": FIP, "port": "web"}
        ],
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(topology(), tmp_path_factory.mktemp("failover-ovs"), None) as lab:
        yield lab


class TimedPing:
    """`ping -D -i 0.01` from the outside to `ip` until `stop`: the longest time between
    two replies, by ping's own timestamps (a count of lost requests would undercount a
    pause in sending)."""

    def __init__(self, lab: Lab, ip: str) -> None:
        end = time.monotonic() + 10
        while lab.exec("outside", ["ping", "-c", "1", "-W", "1", ip], timeout=10).returncode:
            assert time.monotonic() < end, f"the outside never reached {ip}"
        cmd = ["ip", "netns", "exec", lab.netns("outside"), "ping", "-D", "-n", "-i", "0.01",
               "-W", "1", ip]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> tuple[int, float]:
        """(replies, the longest gap between two replies in seconds)."""
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=10)
        stamps = [float(m) for m in re.findall(r"^\[(\d+\.\d+)\] .*icmp_seq=\d+ ttl=", out, re.M)]
        assert len(stamps) > 100, out[-2000:] + err
        return len(stamps), max(b - a for a, b in itertools.pairwise(stamps))


def _vsctl(lab: Lab, chassis: str, *args: str) -> str:
    db = f"unix:{lab.dir / f'ovs-{chassis}' / 'db.sock'}"
    r = subprocess.run(["ovs-vsctl", f"--db={db}", "--timeout=10", *args],
                       capture_output=True, text=True, timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_open_vswitch_chassis_run_bfd_with_ovn_s_ports(lab: Lab) -> None:
    _all_up(lab)  # hv1's report from its vnet switch, hv2's and hv3's from their OVSDB
    got = _bfd(lab)
    assert got == {
        "hv1": {"hv2": "up", "hv3": "up"},
        "hv2": {"hv1": "up", "hv3": "up"},
        "hv3": {"hv1": "up", "hv2": "up"},
    }, got
    ports = _vsctl(lab, "hv2", "list-ports", "br-int").split()
    bfd_ports = sorted(p for p in ports if p.startswith("vbfd-"))
    assert len(bfd_ports) == 2, ports
    for p in bfd_ports:
        assert _vsctl(lab, "hv2", "get", "interface", p, "options:key") == '"0"'
        assert _vsctl(lab, "hv2", "get", "interface", p, "bfd:enable") == '"true"'
        assert _vsctl(lab, "hv2", "get", "interface", p, "bfd_status:state") == "up"
    # no flow of the model's uses a BFD port
    ofports = {_vsctl(lab, "hv2", "get", "interface", p, "ofport") for p in bfd_ports}
    mgmt = f"unix:{lab.dir / 'ovs-hv2' / 'br-int.mgmt'}"
    flows = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", mgmt],
                           capture_output=True, text=True, timeout=30).stdout  # fmt: skip
    assert "table=" in flows, flows
    for n in ofports:
        assert f"in_port={n}," not in flows and f"output:{n}" not in flows, (n, flows)


def test_killing_the_active_open_vswitch_gateway_fails_over_within_3_s(lab: Lab) -> None:
    _all_up(lab)
    ping = TimedPing(lab, FIP)
    took = 0.0
    try:
        time.sleep(1)
        (sw,) = [p for p in lab.state["procs"] if p["role"] == "switch-hv2"]
        assert "ovs-vswitchd" in sw["cmd"][0], sw
        os.kill(int(sw["pid"]), signal.SIGKILL)
        t0 = time.monotonic()
        while True:
            got = _bfd(lab)
            if got["hv1"].get("hv2") != "up" and got["hv3"].get("hv2") != "up":
                break
            assert time.monotonic() - t0 < 10, f"hv2 never reported down: {got}"
            time.sleep(0.1)
        took = time.monotonic() - t0
        time.sleep(4)
    finally:
        replies, outage = ping.stop()
    print(f"failover: hv2 reported down within {took:.2f} s (as polled); {replies} replies, "
          f"at most {outage:.2f} s between two")  # fmt: skip
    assert 0.1 < outage <= 3.0, (replies, outage)  # lost some (hv2 had them), back in 3 s
    got = _bfd(lab)
    assert got["hv1"]["hv3"] == "up" and got["hv3"]["hv1"] == "up", got

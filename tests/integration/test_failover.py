"""Gateway failover on real namespaces: a gateway chassis cut from the controller keeps its
gateway; a gateway chassis' switch killed, the next takes over.

Three vnet chassis: hv1 holds the workload and has no uplink (a compute-only
host, so the workload's floating IP is translated by the active gateway, never
distributed); hv2 and hv3 are the router's gateway chassis (in that order),
each with an uplink and a BGP speaker advertising the router's floating IPs to
the outside's FRR (the active gateway's route as is, the standby's prepended).
The controller runs BFD between the chassis (vnet's BFD_CONFIG) and learns
what the sessions say.  The outside pings the floating IP every 10 ms
throughout:

- hv2 cut from the controller (its OpenFlow connection shut down, no
  reconnection possible for a while; the data plane untouched): hv1 and hv3
  still see hv2 up, so nothing fails over and not one ping is lost -- nor when
  hv2 reconnects and the controller reconciles it.
- hv2's switch process killed: hv1 and hv3 see it down, the gateway becomes
  active on hv3, which announces the gateway's and the floating IP's addresses
  out of its uplink; the pings come back within 3 s, and the outside's best
  route to the floating IP is hv3's.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from vnet.lab.real import Lab

from .labrig import running_lab
from .test_bgp import becomes, best

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs openvswitch-switch"),
    pytest.mark.skipif(shutil.which("vtysh") is None, reason="needs frr"),
]
FIP = "198.51.100.50"
ADDR = {"hv2": "198.51.100.202", "hv3": "198.51.100.203"}
ASN = {"hv2": 65102, "hv3": 65103}


def topology() -> dict[str, Any]:
    peers = [{"ip": "198.51.100.1", "asn": 65000}]
    gateways = [
        {"name": n, "bgp": {"asn": ASN[n], "physnets": {"phys": {"addresses": [ADDR[n]],
                                                                 "peers": peers}}}}
        for n in ("hv2", "hv3")
    ]  # fmt: skip
    return {
        "tenants": [{"name": "ops"}, {"name": "t1"}],
        "chassis": [{"name": "hv1", "physnets": {}}, *gateways],
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
                "advertise": ["floating_ips"],
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
    with running_lab(topology(), tmp_path_factory.mktemp("failover"), "vnet") as lab:
        yield lab


def _get(lab: Lab, kind: str) -> Any:
    r = subprocess.run(
        [sys.executable, "-m", "vnet", "get", kind, "--api", lab.state["api"], "-o", "json"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _bfd(lab: Lab) -> dict[str, dict[str, str]]:
    """Each chassis' sessions, by name."""
    names = {c["id"]: c["name"] for c in _get(lab, "chassis")}
    return {
        o["name"]: {names.get(k, k): v for k, v in o["sessions"].items()}
        for o in _get(lab, "bfd_statuses")
    }


def _connected(lab: Lab) -> set[str]:
    """The chassis whose switches the controller has a connection to."""
    names = {c["id"]: c["name"] for c in _get(lab, "chassis")}
    with lab.client() as c:
        return {names[s["chassis"]] for s in c.status()["switches"]}


def _all_up(lab: Lab) -> None:
    """Every session up, as the chassis report it, and the peers' fast timers in use."""
    got: dict[str, dict[str, str]] = {}
    for _ in range(40):
        got = _bfd(lab)
        if len(got) == 3 and all(s and set(s.values()) == {"up"} for s in got.values()):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"sessions never all up: {got}")
    time.sleep(3)  # the peers' fast timers in use (1 s while coming up)


class Ping:
    """`ping -i 0.01` from the outside to `ip` until `stop`: what was lost, and for how long."""

    INTERVAL = 0.01

    def __init__(self, lab: Lab, ip: str) -> None:
        # the first packets wait on neighbour resolution (the router learns the outside's MAC)
        end = time.monotonic() + 10
        while lab.exec("outside", ["ping", "-c", "1", "-W", "1", ip], timeout=10).returncode:
            assert time.monotonic() < end, f"the outside never reached {ip}"
        cmd = ["ip", "netns", "exec", lab.netns("outside"), "ping", "-n", "-i",
               str(self.INTERVAL), "-W", "1", ip]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> tuple[int, int, float]:
        """(sent, lost, the longest outage in seconds: the longest run of lost requests)."""
        self.proc.send_signal(signal.SIGINT)
        out, err = self.proc.communicate(timeout=10)
        sent = re.search(r"(\d+) packets transmitted", out)
        assert sent, out + err
        n = int(sent.group(1))
        got = {int(s) for s in re.findall(r"icmp_seq=(\d+) ttl=", out)}
        # the last requests were still on their way when ping was stopped: not lost
        n = max(got, default=n)
        runs, run = [0], 0
        for seq in range(1, n + 1):
            run = 0 if seq in got else run + 1
            runs.append(run)
        self.lost = sorted(set(range(1, n + 1)) - got)
        return n, len(self.lost), max(runs) * self.INTERVAL


@contextmanager
def cut_from_controller(lab: Lab, chassis: str) -> Iterator[None]:
    """The chassis' switch cut from the controller: its OpenFlow connection shut down and
    the controller's socket out of reach, so it cannot connect again until the end; every
    other switch stays connected, every data path untouched."""
    sock = lab.dir / "of.sock"
    aside = sock.with_name("of.sock.cut")
    (sw,) = [int(p["pid"]) for p in lab.state["procs"] if p["role"] == f"switch-{chassis}"]
    os.rename(sock, aside)
    try:
        _shut_connection(sw, lab.state["chassis_netns"][chassis], sock)
        yield
    finally:
        os.rename(aside, sock)


def _shut_connection(pid: int, netns: str, path: Path) -> None:
    """Shut down process `pid`'s connection (from network namespace `netns`) to the unix
    socket bound at `path` (a duplicate of its descriptor, pidfd_getfd(2): shutdown acts on
    the socket itself).  The listener's end of a unix connection lives in the connecting
    socket's namespace."""
    rows = subprocess.run(["ip", "netns", "exec", netns, "ss", "-xn", "state", "connected"],
                          capture_output=True, text=True, check=True).stdout.splitlines()  # fmt: skip
    # the controller's ends, bound at `path`: "u_str ... PATH INODE * PEER-INODE"
    peers = {int(r.split()[-1]) for r in rows if f" {path} " in r}
    mine = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        if m:
            mine[int(m.group(1))] = int(fd)
    found = [fd for ino, fd in mine.items() if ino in peers]
    assert len(found) == 1, (path, peers, mine, [r for r in rows if "sock" in r])
    (fd,) = found
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        dup = libc.syscall(438, pidfd, fd, 0)  # pidfd_getfd
        assert dup >= 0, os.strerror(ctypes.get_errno())
    finally:
        os.close(pidfd)
    s = socket.socket(fileno=dup)
    try:
        s.shutdown(socket.SHUT_RDWR)
    finally:
        s.close()


def test_a_gateway_chassis_cut_from_the_controller_is_not_failed_over(lab: Lab) -> None:
    _all_up(lab)
    becomes(lab, f"{FIP}/32", (ADDR["hv2"], "65102"), 30)
    assert _connected(lab) == {"hv1", "hv2", "hv3"}
    ping = Ping(lab, FIP)
    try:
        time.sleep(1)
        with cut_from_controller(lab, "hv2"):
            end = time.monotonic() + 5
            while "hv2" in _connected(lab):
                assert time.monotonic() < end, "the controller still has hv2's switch"
                time.sleep(0.1)
            time.sleep(4)  # a dead peer would have been failed over long since
            assert _connected(lab) == {"hv1", "hv3"}
            got = _bfd(lab)
            assert got["hv1"]["hv2"] == "up" and got["hv3"]["hv2"] == "up", got
            assert best(lab, f"{FIP}/32") == (ADDR["hv2"], "65102")
        end = time.monotonic() + 20
        while "hv2" not in _connected(lab):
            assert time.monotonic() < end, "hv2's switch never connected again"
            time.sleep(0.2)
        time.sleep(2)  # reconciled
    finally:
        sent, lost, _ = ping.stop()
    print(f"controller cut: {sent} pings, {lost} lost")
    assert sent > 500 and lost == 0, (sent, ping.lost)
    assert best(lab, f"{FIP}/32") == (ADDR["hv2"], "65102")


def test_killing_the_active_gateway_chassis_switch_fails_over_within_3_s(lab: Lab) -> None:
    _all_up(lab)
    becomes(lab, f"{FIP}/32", (ADDR["hv2"], "65102"), 30)
    assert set(_bfd(lab)["hv1"]) == {"hv2", "hv3"}
    ping = Ping(lab, FIP)
    try:
        time.sleep(1)
        (sw,) = [p for p in lab.state["procs"] if p["role"] == "switch-hv2"]
        os.kill(int(sw["pid"]), signal.SIGKILL)
        took = becomes(lab, f"{FIP}/32", (ADDR["hv3"], "65103"), 15)
        time.sleep(max(0.0, 4 - took))
    finally:
        sent, lost, outage = ping.stop()
    print(f"failover: {lost} of {sent} pings lost, {outage:.2f} s without a reply; "
          f"the outside's route via hv3 after {took:.2f} s")  # fmt: skip
    assert 0 < outage <= 3.0, (sent, lost, outage)
    got = _bfd(lab)
    assert got["hv1"]["hv2"] != "up" and got["hv3"]["hv2"] != "up", got
    assert got["hv1"]["hv3"] == "up", got

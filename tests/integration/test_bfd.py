"""BFD between a vnet chassis and an Open vSwitch chassis over Geneve.

hv1 runs the vnet switch with a flow-based Geneve port at 192.168.78.1; the
Open vSwitch chassis (userspace netdev datapath, its own ovsdb-server and
ovs-vswitchd, as the lab runs one) has its address on `br-phy` and, as OVN
configures it, a Geneve port per remote chassis on `br-int` with
`bfd:enable=true`, `check_tnl_key=true` and 100 ms timers.  Both sides must
come Up -- Open vSwitch judging vnet's frames by its own rules -- and each must
find the other's silence within a second.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vnet.testing.netns import Lab, run, wait_for
from vnet.testing.ovs import SCHEMA

from .switch_rig import SwitchRig

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]
VNET_IP, OVS_IP = "192.168.78.1", "192.168.78.2"


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


class Peers:
    def __init__(self, lab: Lab, tmp: Path, beside_flow_based: bool = False) -> None:
        assert shutil.which("ovs-vswitchd"), "ovs-vswitchd missing: `make test` installs it"
        self.lab = lab
        hv = lab.ns("bhv")
        self.ovs_ns = ons = lab.ns("bovs")
        under, peer = lab.veth("bun", hv, [f"{VNET_IP}/24"])
        run("ip", "link", "set", under, "netns", ons)
        run("ip", "-n", ons, "link", "set", under, "up")
        vnet_mac = lab.exec(hv, "cat", f"/sys/class/net/{peer}/address").stdout.strip()
        d = str(tmp / "ovs")
        os.makedirs(d)
        env = {"OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d, "OVS_SYSCONFDIR": d}
        run("ovsdb-tool", "create", f"{d}/conf.db", SCHEMA)
        lab.spawn("ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock",
                  f"--unixctl={d}/ovsdb.ctl", env=env, log=tmp / "ovsdb.log")  # fmt: skip
        wait_for(lambda: os.path.exists(f"{d}/db.sock"), 10, "ovsdb-server")
        self.vsctl = ("ovs-vsctl", f"--db=unix:{d}/db.sock", "--timeout=20")
        run(*self.vsctl, "--no-wait", "init")
        lab.spawn("ovs-vswitchd", f"unix:{d}/db.sock", f"--unixctl={d}/vswitchd.ctl",
                  ns=ons, env=env, log=tmp / "vswitchd.log")  # fmt: skip
        self.appctl = ("ovs-appctl", "-t", f"{d}/vswitchd.ctl")
        self.ofctl_target = f"unix:{d}/br-int.mgmt"
        self.hv = hv
        self.vswitchd_log = tmp / "vswitchd.log"
        run(*self.vsctl, "add-br", "br-phy", "--", "set", "bridge", "br-phy",
            "datapath_type=netdev", "--", "add-port", "br-phy", under)  # fmt: skip
        run("ip", "-n", ons, "addr", "add", f"{OVS_IP}/24", "dev", "br-phy")
        run("ip", "-n", ons, "link", "set", "br-phy", "up")
        # the kernel behind the underlay port answers ARP for br-phy's address too (with
        # that port's MAC, which Open vSwitch's tunnelling does not take): pin the right one
        phy_mac = lab.exec(ons, "cat", "/sys/class/net/br-phy/address").stdout.strip()
        run("ip", "-n", hv, "neigh", "replace", OVS_IP, "lladdr", phy_mac, "dev", peer,
            "nud", "permanent")  # fmt: skip
        run(*self.vsctl, "add-br", "br-int", "--", "set", "bridge", "br-int",
            "datapath_type=netdev", "fail_mode=secure")  # fmt: skip
        # what OVN's controller/bfd.c sets on the tunnel port to a gateway chassis
        key = "flow"
        if beside_flow_based:
            # the chassis keeps its flow-based port for the overlay; the per-peer port
            # has key 0, so it gets only BFD from the peer, the rest goes to the other
            run(*self.vsctl, "add-port", "br-int", "vtep-geneve", "--", "set", "interface",
                "vtep-geneve", "type=geneve", "options:remote_ip=flow", "options:key=flow",
                f"options:local_ip={OVS_IP}", "ofport_request=1")  # fmt: skip
            key = "0"
        run(*self.vsctl, "add-port", "br-int", "ovn-hv1-0", "--", "set", "interface",
            "ovn-hv1-0", "type=geneve", f"options:remote_ip={VNET_IP}", f"options:key={key}",
            "bfd:enable=true", "bfd:min_tx=100", "bfd:min_rx=100", "bfd:mult=3",
            "bfd:check_tnl_key=true")  # fmt: skip
        # userspace tunnelling drops what finds its next hop unknown: tell it vnet's MAC
        wait_for(lambda: self._neigh(vnet_mac), 10, "tnl/neigh/set")
        self.sw = SwitchRig(lab, tmp, "bsw")
        self.sw.start([f"gnv0,kind=geneve,local_ip={VNET_IP}"], "--fail-mode", "secure", ns=hv)

    def _neigh(self, mac: str) -> bool:
        r = subprocess.run([*self.appctl, "tnl/neigh/set", "br-phy", VNET_IP, mac],
                           capture_output=True, text=True, timeout=10)  # fmt: skip
        return r.returncode == 0

    def ovs_state(self) -> dict[str, str]:
        out = run(*self.vsctl, "get", "interface", "ovn-hv1-0", "bfd_status").stdout.strip()
        items = [kv.split("=", 1) for kv in out.strip("{}").split(", ") if "=" in kv]
        return {k: v.strip('"') for k, v in items}

    def ovs_hears_fast_up(self) -> bool:
        """Open vSwitch's last packet from vnet said Up and 100 ms (its detection time 300 ms)."""
        out = run(*self.appctl, "bfd/show", "ovn-hv1-0").stdout
        return "Remote Session State: up" in out and "Remote Minimum TX Interval: 100ms" in out

    def vnet_state(self) -> dict[str, object]:
        sessions = self.sw.ctl("bfd-show")["sessions"]
        return dict(sessions[0]) if sessions else {}

    def why(self) -> str:
        return (
            f"vnet: {self.sw.ctl('bfd-show')}\novs: {self.ovs_state()}\n"
            + self.vswitchd_log.read_text(errors="replace")[-3000:]
            + self.sw.log()[-2000:]
        )


@pytest.mark.parametrize("beside_flow_based", [False, True], ids=["ovn", "key0"])
def test_vnet_and_open_vswitch_peer_and_find_each_others_silence(
    lab: Lab, tmp_path: Path, beside_flow_based: bool
) -> None:
    p = Peers(lab, tmp_path, beside_flow_based)
    p.sw.ctl("bfd-add", port="gnv0", peer=OVS_IP, min_tx=100, min_rx=100)
    try:
        wait_for(lambda: p.vnet_state().get("state") == "up"
                 and p.ovs_state().get("state") == "up", 15, "both sessions up")  # fmt: skip
    except TimeoutError:
        raise AssertionError(p.why()) from None
    assert p.ovs_state().get("forwarding") == "true"
    wait_for(lambda: p.vnet_state()["remote_state"] == "up", 2, "vnet to hear Up")
    wait_for(p.ovs_hears_fast_up, 2, "Open vSwitch to hear vnet Up at 100 ms")
    assert p.vnet_state()["detect_time_us"] == 300_000
    assert p.sw.ctl("bfd-show")["drops"] == {}
    # Open vSwitch stops: vnet finds it out within a second
    run(*p.vsctl, "clear", "interface", "ovn-hv1-0", "bfd")
    t0 = time.monotonic()
    wait_for(lambda: p.vnet_state().get("state") != "up", 3, "vnet to see the peer gone")
    assert time.monotonic() - t0 <= 1.0, p.why()
    assert p.vnet_state()["diagnostic"] == "expired"
    # back, then vnet stops: Open vSwitch finds it out within a second
    run(*p.vsctl, "set", "interface", "ovn-hv1-0", "bfd:enable=true", "bfd:min_tx=100",
        "bfd:min_rx=100", "bfd:check_tnl_key=true")  # fmt: skip
    try:
        wait_for(lambda: p.vnet_state().get("state") == "up"
                 and p.ovs_state().get("state") == "up", 15, "both sessions up again")  # fmt: skip
    except TimeoutError:
        raise AssertionError(p.why()) from None
    wait_for(p.ovs_hears_fast_up, 2, "Open vSwitch to hear vnet Up at 100 ms")
    p.sw.ctl("bfd-del", port="gnv0", peer=OVS_IP)
    t0 = time.monotonic()
    wait_for(lambda: p.ovs_state().get("state") != "up", 3, "Open vSwitch to see vnet gone")
    assert time.monotonic() - t0 <= 1.0 + 0.3, p.why()  # + ovsdb's status update lag
    assert "Expired" in p.ovs_state().get("diagnostic", ""), p.why()


def test_with_a_key_0_bfd_port_the_overlay_stays_on_the_flow_based_port(
    lab: Lab, tmp_path: Path
) -> None:
    """Beside the flow-based port, a per-peer port with key 0 takes BFD only: a frame
    with another key from the same peer still comes in on the flow-based port."""
    p = Peers(lab, tmp_path, beside_flow_based=True)
    p.sw.ctl("bfd-add", port="gnv0", peer=OVS_IP)
    wait_for(lambda: p.ovs_state().get("state") == "up", 15, "Open vSwitch's session up")
    ofctl = ("ovs-ofctl", "-O", "OpenFlow13")
    for flow in (
        "in_port=vtep-geneve,tun_id=5,actions=drop",
        "in_port=ovn-hv1-0,tun_id=5,actions=drop",
    ):
        run(*ofctl, "add-flow", p.ofctl_target, flow)
    send = (  # through the kernel (its neighbour entry), as vnet's tunnel port sends
        "import socket; from scapy.all import IP, UDP, Ether;"
        "from scapy.contrib.geneve import GENEVE;"
        f"p = IP(src='{VNET_IP}',dst='{OVS_IP}')/UDP(sport=50000,dport=6081)/GENEVE(vni=5)"
        "/Ether(dst='02:00:00:00:00:02')/IP(src='10.0.0.1',dst='10.0.0.2')/UDP(dport=9);"
        "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW);"
        f"[s.sendto(bytes(p), ('{OVS_IP}', 0)) for _ in range(3)]"
    )
    lab.exec(p.hv, sys.executable, "-c", send)

    def counts() -> dict[str, int]:
        out = run(*ofctl, "--names", "dump-flows", p.ofctl_target).stdout
        got = {}
        for line in out.splitlines():
            for name in ("vtep-geneve", "ovn-hv1-0"):
                if f"in_port={name}" in line or f'in_port="{name}"' in line:
                    got[name] = int(line.split("n_packets=")[1].split(",")[0])
        return got

    try:
        wait_for(lambda: counts().get("vtep-geneve") == 3, 5, "the overlay frames")
    except TimeoutError:
        raise AssertionError(run(*ofctl, "dump-flows", p.ofctl_target).stdout + p.why()) from None
    assert counts()["ovn-hv1-0"] == 0

"""Many chassis on real namespaces: `vnet lab up` with three hypervisors and tunnels.

Each chassis is a namespace with its own switch process, cabled to an
underlay bridge in the lab's namespace; tshark captures on the workloads and
on each chassis' underlay cable are the judges: no frame of one tenant
reaches the other's workloads, every tunnel packet carries its network's
VNI, and a broadcast crosses only to chassis of its network.  Then the same
with an Open vSwitch chassis among vnet ones, over VXLAN and over Geneve.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from vnet.lab.real import Lab

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]
ROOT = Path(__file__).resolve().parents[2]
VNET = [sys.executable, "-m", "vnet"]
EXAMPLE = ROOT / "examples/three-chassis.yaml"


def lab_up(tmp: Path, doc: dict[str, Any]) -> Lab:
    f = tmp / "topology.yaml"
    f.write_text(yaml.safe_dump(doc))
    r = subprocess.run([*VNET, "lab", "up", str(f), "--dir", str(tmp / "lab")],
                       capture_output=True, text=True, timeout=180)  # fmt: skip
    lab = Lab(tmp / "lab")
    assert r.returncode == 0, r.stderr + r.stdout
    return lab


def lab_down(tmp: Path) -> None:
    subprocess.run([*VNET, "lab", "down", "--dir", str(tmp / "lab")], timeout=120)
    assert not (tmp / "lab" / "state.json").exists()


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("three")
    try:
        yield lab_up(tmp, yaml.safe_load(EXAMPLE.read_text()))
    finally:
        lab_down(tmp)


@contextmanager
def capture(pcap: Path, ns: str, *ifaces: str) -> Iterator[None]:
    """tshark on `ifaces` inside `ns` for the duration of the block (stopped by its PID)."""
    assert shutil.which("tshark"), "tshark missing: `make test` installs it"
    args = ["ip", "netns", "exec", ns, "tshark", "-q", "-w", str(pcap)]
    for i in ifaces:
        args += ["-i", i]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(2.0)  # tshark needs a moment before it captures
        yield
        time.sleep(0.5)
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def fields(pcap: Path, *names: str, where: str = "") -> list[list[str]]:
    args = ["tshark", "-r", str(pcap), "-T", "fields", "-E", "separator=|"]
    if where:
        args += ["-Y", where]
    for n in names:
        args += ["-e", n]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    return [ln.split("|") for ln in out.splitlines() if ln.strip()]


def ping(lab: Lab, port: str, addr: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return lab.exec(port, ["ping", "-c", "2", "-i", "0.2", "-W", "1", *extra, addr], timeout=30)


def model(lab: Lab) -> tuple[dict[str, str], dict[str, int], dict[str, str]]:
    """MAC -> tenant name, network id -> VNI, MAC -> network id."""
    with lab.client() as c:
        tenants = {t["id"]: t["name"] for t in c.list("tenant")}
        vni = {n["id"]: n["segment_id"] for n in c.list("network")}
        ports = c.list("port")
    return ({p["mac"]: tenants[p["tenant"]] for p in ports}, vni,
            {p["mac"]: p["network"] for p in ports})  # fmt: skip


def _port_mac(lab: Lab, port: str) -> str:
    return lab.exec(port, ["cat", "/sys/class/net/eth0/address"]).stdout.strip()


def test_two_tenants_one_subnet_three_chassis_isolated(three: Lab, tmp_path: Path) -> None:
    lab = three
    tenant_of, vni_of, net_of = model(lab)
    ul_ns, cables = lab.state["underlay_netns"], lab.state["underlay_links"]
    workloads = sorted(lab.state["ports"])
    caps = {}
    with contextlib.ExitStack() as stack:
        for w in workloads:
            caps[w] = tmp_path / f"{w}.pcap"
            stack.enter_context(capture(caps[w], lab.netns(w), "eth0"))
        under = tmp_path / "underlay.pcap"
        stack.enter_context(capture(under, ul_ns, *cables.values()))
        for tenant in ("blue", "red"):
            for a in (1, 2, 3):
                for b in (1, 2, 3):
                    if a != b:
                        r = ping(lab, f"{tenant}-{a}", f"10.0.0.1{b}")
                        assert r.returncode == 0, (tenant, a, b, r.stdout + r.stderr)
        r = ping(lab, "batch-1", "10.0.1.12")
        assert r.returncode == 0, r.stdout
    # every frame a workload received came from its own tenant
    for w in workloads:
        mine = tenant_of[_port_mac(lab, w)]
        srcs = {r[0] for r in fields(caps[w], "eth.src")}
        strangers = {s for s in srcs if tenant_of.get(s) != mine}
        assert srcs and not strangers, (w, strangers)
    # and every tunnel packet carried the VNI of its inner frame's network
    rows = fields(under, "geneve.vni", "eth.src", where="geneve")
    assert len(rows) >= 24, rows  # 13 pings of 2 echoes each way, some cross-chassis
    for vni, src in rows:
        inner = src.split(",")[-1]
        assert int(vni, 0) == vni_of[net_of[inner]], (vni, inner)
    # the workloads' MTU is what the tunnels carry: 1500 - 58 for Geneve with the option
    out = lab.exec("blue-1", ["ip", "-o", "link", "show", "eth0"]).stdout
    assert "mtu 1442" in out
    assert ping(lab, "blue-1", "10.0.0.13", "-M", "do", "-s", "1414").returncode == 0


def test_broadcast_reaches_only_chassis_of_its_network(three: Lab, tmp_path: Path) -> None:
    lab = three
    _, vni_of, net_of = model(lab)
    batch = net_of[_port_mac(lab, "batch-1")]
    ul_ns, cables = lab.state["underlay_netns"], lab.state["underlay_links"]
    pcap = tmp_path / "bcast.pcap"
    with capture(pcap, ul_ns, cables["hv2"], cables["hv3"]):
        # a broadcast in `batch` (on hv1 and hv2 only); workloads ignore broadcast echoes
        lab.exec("batch-1", ["ping", "-b", "-c", "2", "-i", "0.2", "-W", "1", "10.0.1.255"],
                 timeout=30)  # fmt: skip
    rows = fields(pcap, "frame.interface_name", "ip.dst", "geneve.vni",
                  where="geneve && eth.dst == ff:ff:ff:ff:ff:ff")  # fmt: skip
    copies = [(i, d.split(",")[0]) for i, d, v in rows if int(v, 0) == vni_of[batch]]
    # one copy per echo, each to hv2 (seen on hv2's cable) and none to hv3
    assert copies and {d for _, d in copies} == {"192.168.100.2"}, rows
    assert all(i == cables["hv2"] for i, _ in copies), rows


def test_migration_loses_at_most_two_echoes_ten_times(three: Lab, tmp_path: Path) -> None:
    """blue-2 moves hv2 -> hv3 -> hv2 ... while blue-1 (hv1) pings it every 10 ms."""
    lab = three
    lost = []
    garps = tmp_path / "garp.pcap"
    with capture(garps, lab.netns("blue-1"), "eth0"):
        for to in ["hv3", "hv2"] * 5:
            pinger = subprocess.Popen(
                ["ip", "netns", "exec", lab.netns("blue-1"),
                 "ping", "-i", "0.01", "-c", "300", "-W", "1", "10.0.0.12"],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            try:
                time.sleep(0.3)
                r = subprocess.run(
                    [*VNET, "port", "migrate", "blue-2", "--to", to, "--lab", str(lab.dir)],
                    capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                assert r.returncode == 0, r.stderr
                out, _ = pinger.communicate(timeout=30)
            finally:
                if pinger.poll() is None:
                    pinger.kill()
                    pinger.wait(5)
            stats = next(ln for ln in out.splitlines() if "transmitted" in ln).split()
            sent, got = int(stats[0]), int(stats[3])
            assert sent == 300, out
            lost.append(sent - got)
            with lab.client() as c:
                p = c.get("port", "blue-2", "blue")
                assert c.get("chassis", p["chassis"])["name"] == to
    assert max(lost) <= 2, lost
    # each arrival was announced to the network: a gratuitous ARP from 10.0.0.12 at blue-1
    rows = fields(garps, "arp.src.proto_ipv4", where="arp.src.proto_ipv4 == 10.0.0.12 && "
                  "arp.dst.proto_ipv4 == 10.0.0.12")  # fmt: skip
    assert len(rows) >= 10, rows


@pytest.mark.parametrize("encap", ["vxlan", "geneve"])
def test_vnet_and_open_vswitch_chassis_interoperate(tmp_path: Path, encap: str) -> None:
    assert shutil.which("ovs-vswitchd"), "Open vSwitch missing: `make test` installs it"
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["encap"] = encap
    doc["chassis"][1]["switch"] = "ovs"  # hv2
    doc["ports"] = [p for p in doc["ports"] if p["tenant"] == "blue"]
    doc["networks"] = [n for n in doc["networks"] if n["tenant"] == "blue"]
    doc["subnets"] = [s for s in doc["subnets"] if s["tenant"] == "blue"]
    lab = lab_up(tmp_path, doc)
    try:
        cables = lab.state["underlay_links"]
        pcap = tmp_path / "interop.pcap"
        with capture(pcap, lab.state["underlay_netns"], cables["hv2"]):
            for a, b in (("blue-1", "10.0.0.12"), ("blue-2", "10.0.0.11"), ("blue-2", "10.0.0.13")):
                r = ping(lab, a, b)
                assert r.returncode == 0, (a, b, r.stdout + r.stderr)
        key = "vxlan.vni" if encap == "vxlan" else "geneve.vni"
        rows = fields(pcap, "ip.src", "ip.dst", key, "icmp.type", where=f"{encap} && icmp")
        pairs = {(s.split(",")[0], d.split(",")[0]) for s, d, _, _ in rows}
        # Open vSwitch (192.168.100.2) sent to and received from both vnet chassis
        assert {("192.168.100.2", "192.168.100.1"), ("192.168.100.1", "192.168.100.2"),
                ("192.168.100.2", "192.168.100.3"), ("192.168.100.3", "192.168.100.2")} <= pairs  # fmt: skip
    finally:
        lab_down(tmp_path)

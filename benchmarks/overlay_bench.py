"""Overlays: vnet tunnels vs Open vSwitch netdev tunnels vs the kernel's VXLAN/Geneve device.

One run builds, for each encapsulation (VXLAN, Geneve), the same two-chassis
topology three times: two hypervisor namespaces joined by an underlay veth
(192.168.66.0/24, MTU 1500), one workload namespace behind each, and between
them, in each hypervisor,

* (a) a vnet switch with a flow-based tunnel port (the flows a vnet controller
  installs: VNI, remote VTEP, for Geneve the logical ports in OVN's option),
* (b) Open vSwitch (datapath_type=netdev) with a flow-based tunnel port, the
  underlay address on its own br-phy bridge as its userspace tunnelling
  needs, and the same flows (Geneve option mapped to tun_metadata0),
* (c) the Linux kernel: a VXLAN or Geneve device and a bridge.

It measures iperf3 TCP (one stream, default offloads on the workloads) and
64-byte UDP frames received per second (as switch_bench does), and prints
each figure and the ratios vnet/OVS and vnet/kernel.  The workloads' MTU is
the underlay's minus the encapsulation (1450 VXLAN, 1442 Geneve with vnet's
option), for all three.

Everything runs in namespaces this script makes; Open vSwitch runs from a
private directory per hypervisor, stopped by PID.  Needs root.
Usage: `python benchmarks/overlay_bench.py [--seconds 5]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from switch_bench import measure, topo
from vnet.ofp.client import OFClient
from vnet.ofp.convert import flow_mod_to_ofp
from vnet.pipeline.ofctl import parse_flow
from vnet.testing.netns import Lab, run, wait_for

SECONDS = 5.0
VNI = 5001
VTEP = ("192.168.66.1", "192.168.66.2")
MTU = {"vxlan": 1450, "geneve": 1442}


def hypervisors(lab: Lab, kind: str) -> tuple[str, str, list[str], list[str], str]:
    """Workloads a, b; hypervisors h1, h2 with the workloads' cables; the underlay cable."""
    a, b, pa, pb = topo(lab)
    hv = [lab.ns("h1"), lab.ns("h2")]
    for ns, port, wl in ((hv[0], pa, a), (hv[1], pb, b)):
        run("ip", "link", "set", port, "netns", ns)
        run("ip", "-n", ns, "link", "set", port, "mtu", str(MTU[kind]), "up")
        end = lab.name("p" + ("xa" if wl == a else "xb"))  # the workload's end (topo's name)
        run("ip", "-n", wl, "link", "set", end, "mtu", str(MTU[kind]))
    under, _ = lab.veth("un", hv[1], [f"{VTEP[1]}/24"])
    run("ip", "link", "set", under, "netns", hv[0])
    run("ip", "-n", hv[0], "link", "set", under, "up")
    return a, b, hv, [pa, pb], under


def flows(kind: str, i: int) -> list[str]:
    remote = VTEP[1 - i]
    md = "set_field:0x10002->tun_metadata0," if kind == "geneve" else ""
    return [
        f"in_port=1,actions=set_field:{VNI}->tun_id,{md}set_field:{remote}->tun_dst,output:2",
        f"in_port=2,tun_id={VNI},actions=output:1",
    ]


def run_vnet(seconds: float, kind: str) -> dict[str, float]:
    with Lab() as lab, tempfile.TemporaryDirectory() as d:
        a, b, hv, ports, under = hypervisors(lab, kind)
        run("ip", "-n", hv[0], "addr", "add", f"{VTEP[0]}/24", "dev", under)
        for i in (0, 1):
            name = lab.name(f"vs{i}")
            lab.spawn(
                sys.executable, "-m", "vnet", "switch", "run", "--name", name, "--no-internal",
                "--fail-mode", "secure", "--port", f"{ports[i]},port_security=false,ofport=1",
                "--port", f"vtep,kind={kind},local_ip={VTEP[i]},ofport=2",
                ns=hv[i], env={"VNET_RUNDIR": d}, log=Path(d) / f"{name}.log",
            )  # fmt: skip
            mgmt = os.path.join(d, f"{name}.mgmt")
            wait_for(lambda m=mgmt: os.path.exists(m), 20, "vnet switch")  # type: ignore[misc]
            with OFClient("unix:" + mgmt) as c:
                c.transact(*[flow_mod_to_ofp(parse_flow(t).flow) for t in flows(kind, i)])
        return measure(lab, a, b, seconds)


def run_ovs(seconds: float, kind: str) -> dict[str, float]:
    with Lab() as lab, tempfile.TemporaryDirectory() as top:
        a, b, hv, ports, under = hypervisors(lab, kind)
        for i in (0, 1):
            d = Path(top) / f"h{i}"
            d.mkdir()
            env = {k: str(d) for k in ("OVS_RUNDIR", "OVS_DBDIR", "OVS_LOGDIR", "OVS_SYSCONFDIR")}
            run("ovsdb-tool", "create", f"{d}/conf.db", "/usr/share/openvswitch/vswitch.ovsschema")
            sock = f"unix:{d}/db.sock"
            lab.spawn("ovsdb-server", f"{d}/conf.db", f"--remote=p{sock}",
                      f"--unixctl={d}/ovsdb.ctl", env=env, log=d / "ovsdb.log")  # fmt: skip
            wait_for(lambda d=d: os.path.exists(f"{d}/db.sock"), 10, "ovsdb-server")  # type: ignore[misc]
            vsctl = ("ovs-vsctl", f"--db={sock}", "--timeout=20")
            run(*vsctl, "--no-wait", "init")
            lab.spawn("ovs-vswitchd", sock, f"--unixctl={d}/vswitchd.ctl", ns=hv[i], env=env,
                      log=d / "vswitchd.log")  # fmt: skip
            # userspace tunnelling: the VTEP address on a bridge holding the underlay port
            uplink = under if i == 0 else lab.name("pun")
            run(*vsctl, "add-br", "br-phy", "--", "set", "bridge", "br-phy",
                "datapath_type=netdev", "--", "add-port", "br-phy", uplink)  # fmt: skip
            run("ip", "-n", hv[i], "addr", "flush", "dev", uplink)
            run("ip", "-n", hv[i], "addr", "add", f"{VTEP[i]}/24", "dev", "br-phy")
            run("ip", "-n", hv[i], "link", "set", "br-phy", "up")
            br = "br-int"
            run(*vsctl, "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev",
                "fail_mode=secure", "protocols=OpenFlow13")  # fmt: skip
            run(*vsctl, "add-port", br, ports[i], "--", "set", "interface", ports[i],
                "ofport_request=1")  # fmt: skip
            run(*vsctl, "add-port", br, "vtep", "--", "set", "interface", "vtep", f"type={kind}",
                "options:remote_ip=flow", "options:key=flow", f"options:local_ip={VTEP[i]}",
                "ofport_request=2")  # fmt: skip
            mgmt = f"unix:{d}/{br}.mgmt"
            if kind == "geneve":
                run("ovs-ofctl", "-O", "OpenFlow13", "add-tlv-map", mgmt,
                    "{class=0x0102,type=0x80,len=4}->tun_metadata0")  # fmt: skip
            for f in flows(kind, i):
                run("ovs-ofctl", "-O", "OpenFlow13", "add-flow", mgmt, f)
        return measure(lab, a, b, seconds)


def run_kernel(seconds: float, kind: str) -> dict[str, float] | None:
    """None when this kernel has no device for the encapsulation (no geneve module)."""
    with Lab() as lab:
        a, b, hv, ports, under = hypervisors(lab, kind)
        run("ip", "-n", hv[0], "addr", "add", f"{VTEP[0]}/24", "dev", under)
        for i in (0, 1):
            h = ("ip", "-n", hv[i])
            remote = VTEP[1 - i]
            if kind == "vxlan":
                run(*h, "link", "add", "tun0", "type", "vxlan", "id", str(VNI), "local", VTEP[i],
                    "remote", remote, "dstport", "4789")  # fmt: skip
            else:
                try:
                    run(*h, "link", "add", "tun0", "type", "geneve", "id", str(VNI),
                        "remote", remote)  # fmt: skip
                except RuntimeError:
                    return None
            run(*h, "link", "add", "br0", "type", "bridge")
            for dev in ("tun0", ports[i]):
                run(*h, "link", "set", dev, "master", "br0")
                run(*h, "link", "set", dev, "up")
            run(*h, "link", "set", "br0", "up")
        return measure(lab, a, b, seconds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=SECONDS)
    ap.add_argument("--kind", choices=["vxlan", "geneve"], action="append")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("overlay_bench needs root (network namespaces, Open vSwitch)")
    runners: dict[str, Callable[[float, str], dict[str, float] | None]] = {
        "vnet": run_vnet,
        "ovs-netdev": run_ovs,
        "linux-kernel": run_kernel,
    }
    for kind in args.kind or ["vxlan", "geneve"]:
        print(f"\n== {kind}, two chassis, {args.seconds:g} s per test ==")
        res = {}
        for name, fn in runners.items():
            r = fn(args.seconds, kind)
            if r is None:
                print(f"  {name:13s} n/a (this kernel has no {kind} device)")
                continue
            res[name] = r
            print(f"  {name:13s} TCP {r['tcp_gbps']:7.3f} Gbit/s   64-byte UDP "
                  f"{r['udp_kpps']:7.1f} kpps received (of {r['udp_sent_kpps']:.1f} kpps sent)")  # fmt: skip
        v = res["vnet"]
        for peer in [p for p in ("ovs-netdev", "linux-kernel") if p in res]:
            p = res[peer]
            tcp = f"{v['tcp_gbps'] / p['tcp_gbps']:.2f}x" if p["tcp_gbps"] else "inf (stalled)"
            udp = v["udp_kpps"] / max(p["udp_kpps"], 1e-9)
            print(f"  vnet/{peer}: TCP {tcp}, small packets {udp:.2f}x")


if __name__ == "__main__":
    main()

"""A lab's BGP: an FRR speaker on each chassis with a BGP configuration, and FRR as
the upstream router in `outside`.

Only for a file whose chassis name `bgp` (`Chassis.bgp`); any other lab runs
no FRR.  Each such chassis gets, per physnet of its BGP configuration, a
cable of its own to the physical switch -- the host's interface on the
physical network, `bgp-PHYSNET` in the chassis' namespace, holding the
chassis' addresses there (an access port on the VLAN of the external network
whose subnet holds the first of them; the datapath's uplink stays the
switch's alone) -- and FRR's zebra, staticd, bgpd and bfdd in its namespace
(`bgp.speaker`: sockets in /run/vnet-frr/TAG-CHASSIS/, logs in the lab's
`frr-CHASSIS-DAEMON.log`), driven by
`python -m vnet.bgp.speaker` (a lab process beside the controller, reading
its API).  `outside` runs the same daemons as the upstream router
(`frr-outside/`), sockets in /run/vnet-frr/TAG-outside/, configured once (`bgp.config.upstream_conf`): its AS is the
peers' (every chassis must name the same for an address of the outside), its
neighbours every chassis' addresses, each in its own family, BFD on.  Its
bgpd installs nothing in the kernel (`-n`): the routes are learned and shown
(`vnet lab exec outside -- vtysh --vty_socket DIR -c 'show ip bgp'`, or
`vtysh_cmd`) while the outside keeps reaching the external subnets on-link,
since a chassis' address is its host's, not its datapath's.  Every process
is the lab's (stopped by PID on `down`), the directories removed.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..bgp.config import upstream_conf
from ..bgp.speaker import DAEMONS, daemon_cmd, ready, vtysh, vtysh_file
from ..model.objects import Chassis

if TYPE_CHECKING:
    from .real import Lab

__all__ = ["bgp_up", "frr_dir", "wants_bgp"]


def wants_bgp(chassis: list[dict[str, Any]]) -> bool:
    return any(ch.get("bgp") for ch in chassis)


FRR_RUN = Path("/run/vnet-frr")  # the daemons' directories: the frr user must reach them


def frr_dir(lab: Lab, who: str) -> Path:
    """Where the FRR of chassis `who` (or `outside`) keeps its sockets: under /run, since
    the daemons run as the frr user, who may not reach into the lab's directory."""
    return FRR_RUN / f"{lab.state['tag']}-{who}"


def _frr(lab: Lab, who: str, netns: str, extra: dict[str, list[str]] | None = None) -> Path:
    d = frr_dir(lab, who)
    shutil.rmtree(d, ignore_errors=True)
    FRR_RUN.mkdir(mode=0o755, exist_ok=True)
    d.mkdir()
    lab._record("dirs", str(d))
    shutil.chown(d, "frr", "frr")  # the daemons drop to the frr user
    for daemon in DAEMONS:
        lab._spawn(f"frr-{who}-{daemon}", *daemon_cmd(daemon, d, (extra or {}).get(daemon, [])),
                   netns=netns)  # fmt: skip
    return d


def _wait_ready(d: Path, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while not ready(d):
        if time.monotonic() > end:
            from .real import LabError

            raise LabError(f"FRR in {d} did not answer (its logs: frr-*.log)")
        time.sleep(0.1)


def bgp_up(
    lab: Lab,
    chassis: list[dict[str, Any]],
    nets: dict[str, Any],
    subnets: dict[str, Any],
    run: Any,
) -> None:
    """Cable, start and configure every chassis' speaker and the outside's FRR."""
    from .real import PHYS_BRIDGE, LabError

    if shutil.which("vtysh") is None or not (Path("/usr/lib/frr") / "bgpd").exists():
        raise LabError("chassis bgp: the lab runs FRR (apt install frr)")
    tag = lab.state["tag"]
    phys = lab.state.get("phys_netns")
    outside = lab.state.get("outside_netns")
    if not phys or not outside:
        raise LabError("chassis bgp: BGP needs an external network (the physical network)")
    upstream: dict[str, int] = {}  # the outside's peer addresses' AS
    neighbours: list[tuple[str, int]] = []
    n = 0
    for raw in chassis:
        ch = Chassis.model_validate({k: v for k, v in raw.items() if k != "status"})
        if ch.bgp is None:
            continue
        ns = lab.state["chassis_netns"][ch.name]
        for physnet, up in sorted(ch.bgp.physnets.items()):
            first = ipaddress.ip_address(up.addresses[0])
            subs = [s for s in subnets.values() if nets[s["network"]].get("physnet") == physnet]
            home = next((s for s in subs if first in ipaddress.ip_network(s["cidr"])), None)
            if home is None:
                raise LabError(f"chassis {ch.name}: bgp.physnets.{physnet}.addresses: "
                               f"{first} is on no external subnet of physnet {physnet!r}")  # fmt: skip
            net = nets[home["network"]]
            a, b = f"vb{tag}{n}", f"vb{tag}{n}h"
            n += 1
            run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            lab._record("links", a)
            run("ip", "link", "set", a, "netns", phys)
            run("ip", "-n", phys, "link", "set", a, "up")
            vlan = [f"tag={net['vlan']}"] if net.get("vlan") else []
            lab._vsctl("--may-exist", "add-port", PHYS_BRIDGE, a, *vlan)
            iface = f"bgp-{physnet}"[:15]
            run("ip", "link", "set", b, "netns", ns)
            run("ip", "-n", ns, "link", "set", b, "name", iface)
            run("ip", "-n", ns, "link", "set", iface, "up")
            # full checksums: the physical switch (a userspace datapath) gets no offload
            # metadata from a veth
            run("ip", "netns", "exec", ns, "ethtool", "-K", iface, "tx", "off")
            for addr in up.addresses:
                ip = ipaddress.ip_address(addr)
                sub = next((s for s in subs if ip in ipaddress.ip_network(s["cidr"])), None)
                if sub is None:
                    raise LabError(f"chassis {ch.name}: bgp.physnets.{physnet}.addresses: "
                                   f"{ip} is on no external subnet of physnet {physnet!r}")  # fmt: skip
                plen = ipaddress.ip_network(sub["cidr"]).prefixlen
                v6 = ["nodad"] if ip.version == 6 else []
                run("ip", "-n", ns, "addr", "add", f"{ip}/{plen}", "dev", iface, *v6)
            mine = {ipaddress.ip_address(x).version: x for x in up.addresses}
            for peer in up.peers:
                if upstream.setdefault(peer.ip, peer.asn) != peer.asn:
                    raise LabError(f"chassis {ch.name}: bgp.physnets.{physnet}.peers: "
                                   f"{peer.ip} is AS {upstream[peer.ip]} for another chassis")  # fmt: skip
                neighbours.append((mine[ipaddress.ip_address(peer.ip).version], ch.bgp.asn))
        d = _frr(lab, ch.name, ns)
        lab._spawn(f"bgp-{ch.name}", sys.executable, "-m", "vnet.bgp.speaker", "--chassis",
                   ch.name, "--api", lab.api, "--dir", str(d),
                   env={"VNET_TOKEN": lab.token} if lab.token else None)  # fmt: skip
    if not upstream:
        return
    asns = set(upstream.values())
    if len(asns) != 1:
        raise LabError(
            f"chassis bgp: the outside is one router: its peers name ASes {sorted(asns)}"
        )
    rid = next((p for p in sorted(upstream) if ipaddress.ip_address(p).version == 4), "10.255.0.1")
    d = _frr(lab, "outside", outside, extra={"bgpd": ["-n"]})
    _wait_ready(d)
    conf = d / "frr.conf"
    conf.write_text(upstream_conf("outside", asns.pop(), rid, neighbours))
    r = vtysh_file(d, conf)
    bad = [x for x in (r.stdout + r.stderr).splitlines() if x.startswith("%")]
    if r.returncode != 0 or bad:
        raise LabError(f"the outside's FRR refused its configuration: {bad or r.stderr}")
    lab.state["outside_frr"] = str(d)
    lab._save()


def vtysh_cmd(lab: Lab, *commands: str) -> subprocess.CompletedProcess[str]:
    """`vtysh -c ...` on the outside's FRR."""
    return vtysh(Path(lab.state["outside_frr"]), *commands)

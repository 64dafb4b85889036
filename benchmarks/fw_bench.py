"""TCP through the distributed firewall against the same network without one (root).

Two vnet switches side by side (`_rig`: namespaces a and b on veth, offloads
off at the namespace ends, as the tracker needs), each programmed with what
the controller would install for a two-port network on its chassis
(`Compiler.compile` then `localize`, the firewall's log meter):

- "firewall": a generated model (`vnet.testing.secmodel`: 1,000 rules in 100
  groups -- group rules and ordered policies) in the same tenant, plus the
  two benchmark ports; b is a member of the last group, whose last ingress
  rule is the only one that lets a's stream in (tcp 5201-5300 from a's
  label); a is in no group (its egress is open).  Every packet runs the ACL
  stages -- conntrack in both ports' zones, the rule stages, the commit.
- "no firewall": the same two ports in a network with no groups or policies.

One iperf3 stream a -> b per round, rigs taking turns; the figure is the
median, and the ratio firewall / no firewall (the issue's target: >= 0.8x).
The flows per chassis of the firewall rig are printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from _rig import A, B, Rig, ratio, rotate, stop_on_sigterm, sysfs, topo
from vnet.compiler import Compiler, localize
from vnet.compiler.acl import LOG_METER
from vnet.datapath.control import request
from vnet.model.objects import Chassis, FixedIP, Network, Port, SecurityGroup, Subnet, Tenant
from vnet.model.rules import State
from vnet.model.secrules import GroupRule
from vnet.ofp.client import OFClient
from vnet.ofp.convert import DP, flow_mod_to_ofp
from vnet.pipeline.flow import Flow
from vnet.testing.netns import Lab, wait_for
from vnet.testing.secmodel import secmodel

SECONDS, ROUNDS = 5.0, 3
STREAM = "5201-5300"  # iperf3's ports (the rig's servers take 5201 and on)


def model(firewall: bool, mac_a: str, mac_b: str) -> State:
    """The two benchmark ports on chassis c0, with (or without) the generated firewall."""
    if firewall:
        st = secmodel(ports=20, groups=100, rules=1_000, networks=1, chassis=1)
        objs = [o for k in ("tenant", "chassis", "network", "subnet", "port", "security_group", "policy")
                for o in st.all(k)]  # fmt: skip
        last = max((o for o in objs if isinstance(o, SecurityGroup)), key=lambda g: int(g.id[1:]))
        rules = list(last.rules)
        i = max(j for j, r in enumerate(rules) if r.direction == "ingress")
        rules[i] = GroupRule.model_validate({
            "direction": "ingress", "protocol": "tcp", "ports": STREAM,
            "from": {"selector": {"bench": "client"}},
        })  # fmt: skip
        objs[objs.index(last)] = last.model_copy(update={"rules": rules})
        b_labels = dict(last.selector)
    else:
        objs = [Tenant(id="t", name="t"), Chassis(id="c0", name="hv0", datapath_id=f"{1:016x}"),
                Network(id="n0", name="n0", tenant="t", segment_id=1)]  # fmt: skip
        b_labels = {}
    objs.append(Network(id="nb", name="nb", tenant="t", segment_id=99))
    objs.append(Subnet(id="sb", name="sb", tenant="t", network="nb", cidr="10.88.0.0/24"))
    for pid, mac, ip, labels in (
        ("fwa", mac_a, A, {"bench": "client"}),
        ("fwb", mac_b, B, b_labels),
    ):
        objs.append(Port(id=pid, name=pid, tenant="t", network="nb", chassis="c0", mac=mac,
                         fixed_ips=[FixedIP(ip=ip)], tunnel_key=1 if pid == "fwa" else 2,
                         labels=labels))  # fmt: skip
    return State.of(objs)


def flows_for(state: State, ofports: dict[str, int]) -> list[Flow]:
    ch = state.get("chassis", "c0")
    ports = {state.get("port", "fwa").iface: ofports["a"], state.get("port", "fwb").iface: ofports["b"]}  # fmt: skip
    return localize(Compiler().compile(state), state, ch, ports)


@contextlib.contextmanager
def programmed(firewall: bool) -> Iterator[tuple[Rig, int]]:
    """A vnet switch between the namespaces with the model's flows; the rig and its flow count."""
    with Lab() as lab, tempfile.TemporaryDirectory() as d:
        t = topo(lab, offloads=False)
        name = lab.name("fw")
        proc = lab.spawn(
            sys.executable, "-m", "vnet", "switch", "run", "--name", name, "--no-internal",
            "--port", f"{t.pa},port_security=false", "--port", f"{t.pb},port_security=false",
            "--fail-mode", "secure", env={"VNET_RUNDIR": d}, log=Path(d) / "sw.log",
        )  # fmt: skip
        ctl = os.path.join(d, f"{name}.ctl")
        wait_for(lambda: os.path.exists(ctl), 20, "vnet switch")
        nos = {p["name"]: p["ofport"] for p in request(ctl, "show")["ports"]}
        st = model(firewall, sysfs(lab, t.a, t.ea, "address"), sysfs(lab, t.b, t.eb, "address"))
        flows = flows_for(st, {"a": nos[t.pa], "b": nos[t.pb]})
        meter = parser.OFPMeterMod(DP, ofp.OFPMC_ADD, ofp.OFPMF_PKTPS, LOG_METER.meter_id,
                                   [parser.OFPMeterBandDrop(LOG_METER.rate, LOG_METER.burst)])  # fmt: skip
        with OFClient("unix:" + os.path.join(d, f"{name}.mgmt")) as c:
            c.transact(meter)
            for i in range(0, len(flows), 500):
                c.transact(*[flow_mod_to_ofp(f) for f in flows[i : i + 500]])
        rig = Rig(lab, t, proc.pid)
        rig.ready()
        yield rig, len(flows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=SECONDS, help="length of one iperf3 round")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="rounds per rig")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("fw_bench needs root (network namespaces)")
    with stop_on_sigterm(), contextlib.ExitStack() as stack:
        fw, n_fw = stack.enter_context(programmed(True))
        plain, n_plain = stack.enter_context(programmed(False))
        rigs = {"firewall": fw, "no firewall": plain}
        print(f"flows on the chassis: {n_fw:,} with the firewall (1,000 rules in 100 groups), "
              f"{n_plain:,} without")  # fmt: skip
        print(f"== one iperf3 stream a -> b: {args.rounds} rounds x {args.seconds:g} s per rig ==")
        rotate(rigs, args.rounds, lambda rig: rig.tcp(args.seconds))
        for n, r in rigs.items():
            rounds = ", ".join(f"{g:.2f}" for g in r.tcp_gbps)
            cpu = statistics.median(r.tcp_cpu)
            print(f"  {n:12s} {statistics.median(r.tcp_gbps):6.2f} Gbit/s (rounds {rounds}); "
                  f"switch CPU {cpu:.2f} cores")  # fmt: skip
        if min(fw.tcp_gbps) <= 0:
            sys.exit("the firewall rig's stream stalled: the last rule did not let it through")
        print(f"firewall / no firewall: {ratio(fw.tcp_gbps, plain.tcp_gbps)} (target >= 0.8x)")


if __name__ == "__main__":
    main()

"""A generated micro-segmentation model: many ports, groups by label, rules and policies.

For benchmarks and tests of the firewall at scale: `secmodel(ports=10_000,
groups=100, rules=1_000)` is one tenant whose ports are spread over
`networks` networks and `chassis` chassis, each port labelled `app=aN` (its
group's selector) and `env=...`; groups allow TCP ports from other groups
(and a CIDR now and then), and ordered policies take a share of the rules
(`policy_share`), with deny, reject, pass and logged rules among them.  The
objects are made directly (no admission), with MACs, addresses, tunnel keys
and VNIs filled in as admission would, and the same `seed` gives the same
model.  `relabel` moves one port to another group, as a label change does.
"""

from __future__ import annotations

import ipaddress
import random
from typing import Any

from ..model.objects import Chassis, FixedIP, Network, Policy, Port, SecurityGroup, Subnet, Tenant
from ..model.rules import State
from ..model.secrules import GroupRule, PolicyRule

__all__ = ["relabel", "secmodel"]

ENVS = ("prod", "stage", "dev")


def secmodel(
    ports: int = 10_000,
    groups: int = 100,
    rules: int = 1_000,
    networks: int = 10,
    chassis: int = 50,
    policy_share: float = 0.2,
    seed: int = 0,
) -> State:
    rnd = random.Random(seed)
    objs: list[Any] = [Tenant(id="t", name="t")]
    for c in range(chassis):
        objs.append(Chassis(id=f"c{c}", name=f"hv{c}", underlay=f"192.168.{c // 250}.{c % 250 + 1}",
                            datapath_id=f"{c + 1:016x}"))  # fmt: skip
    per_net = -(-ports // networks)
    for n in range(networks):
        objs.append(Network(id=f"n{n}", name=f"n{n}", tenant="t", segment_id=n + 1))
        cidr = ipaddress.ip_network(f"10.{n}.0.0/16")
        objs.append(Subnet(id=f"s{n}", name=f"s{n}", tenant="t", network=f"n{n}", cidr=str(cidr)))
    for i in range(ports):
        n, k = divmod(i, per_net)
        ip = ipaddress.ip_network(f"10.{n}.0.0/16").network_address + 10 + k
        objs.append(Port(
            id=f"p{i}", name=f"p{i}", tenant="t", network=f"n{n}", chassis=f"c{i % chassis}",
            mac=f"02:00:00:{i >> 16 & 0xFF:02x}:{i >> 8 & 0xFF:02x}:{i & 0xFF:02x}",
            fixed_ips=[FixedIP(ip=str(ip))], tunnel_key=k + 1,
            labels={"app": f"a{rnd.randrange(groups)}", "env": ENVS[i % len(ENVS)]},
        ))  # fmt: skip
    n_policy = int(rules * policy_share)
    per_group = (rules - n_policy) // max(1, groups)
    for g in range(groups):
        rs = []
        for j in range(per_group):
            remote: dict[str, Any] = {"group": f"g{rnd.randrange(groups)}"}
            if j % 7 == 6:
                remote = {"cidr": f"10.{rnd.randrange(networks)}.0.0/16"}
            rs.append(GroupRule.model_validate({
                "direction": "ingress" if j % 4 else "egress", "protocol": "tcp",
                "ports": str(1000 + rnd.randrange(2000)) if j % 5 else "8000-8099",
                "from" if j % 4 else "to": remote,
            }))  # fmt: skip
        objs.append(SecurityGroup(id=f"g{g}", name=f"g{g}", tenant="t",
                                  selector={"app": f"a{g}"}, rules=rs))  # fmt: skip
    n_pol = max(1, n_policy // 20) if n_policy else 0
    actions = ("allow", "deny", "pass", "reject", "allow", "deny")
    for p in range(n_pol):
        prs = []
        for j in range(n_policy // max(1, n_pol)):
            action = actions[j % len(actions)]
            prs.append(PolicyRule.model_validate({
                "action": action, "direction": "ingress" if j % 2 else "egress",
                "protocol": "tcp" if j % 3 else "udp", "ports": str(20 + j),
                "from" if j % 2 else "to": {"selector": {"env": ENVS[j % len(ENVS)]}},
                "log": action == "deny" and j % 12 == 1,
            }))  # fmt: skip
        # each policy guards one group's ports: a reject or logged rule costs one flow
        # per port it guards (its cookie names the port), so it guards a group, not all
        applied = {"app": f"a{p % groups}"}
        objs.append(Policy(id=f"pol{p}", name=f"pol{p}", tenant="t", priority=p + 1,
                           applied_to=applied, rules=prs))  # fmt: skip
    return State.of(objs)


def relabel(state: State, port: str, app: str) -> State:
    """The model with one port's `app` label changed (so it joins another group)."""
    p = state.get("port", port)
    moved = p.model_copy(update={"labels": {**p.labels, "app": app}})
    out = state.copy()
    out.objects["port"][port] = moved
    out.revision += 1
    return out

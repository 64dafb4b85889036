"""Open vSwitch as a judge: everything vnet prints must parse in `ovs-ofctl`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_ofctl import ROUND_TRIP
from vnet.cli.demo import DEMO_FLOWS
from vnet.pipeline.flow import Rule
from vnet.pipeline.ofctl import (
    format_dump,
    format_flow,
    format_group,
    parse_flow,
    parse_flows,
    parse_group,
)

pytestmark = pytest.mark.integration

GROUPS = [
    "group_id=1,type=select,bucket=weight:2,actions=output:1,bucket=actions=output:2",
    "group_id=2,type=ff,bucket=watch_port:2,actions=output:2,bucket=watch_port:3,actions=pop_vlan,output:3",
    "group_id=3,type=all,bucket=actions=set_field:10.0.0.1->ip_dst,output:1,bucket=actions=output:2",
]


def ovs_ofctl(*args: str) -> subprocess.CompletedProcess[str]:
    path = shutil.which("ovs-ofctl")
    assert path, "ovs-ofctl missing: `make test` installs openvswitch-common"
    return subprocess.run(
        [path, "-O", "OpenFlow13", *args], capture_output=True, text=True, timeout=30
    )


def test_flows_vnet_prints_parse_in_ovs_ofctl(tmp_path: Path) -> None:
    flows = [parse_flow(t).flow for t in ROUND_TRIP] + parse_flows(DEMO_FLOWS)
    lines = [format_flow(f) for f in flows]
    lines += [format_dump(Rule(f), now=1.0).strip() for f in flows]
    src = tmp_path / "flows.txt"
    src.write_text("\n".join(lines) + "\n")
    r = ovs_ofctl("parse-flows", str(src))
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("OFPT_FLOW_MOD") == len(lines)


def test_groups_vnet_prints_parse_in_ovs_ofctl() -> None:
    for text in GROUPS:
        printed = format_group(parse_group(text))
        r = ovs_ofctl("parse-group", printed)
        assert r.returncode == 0 and "OFPT_GROUP_MOD" in r.stdout, (printed, r.stderr)


def test_what_ovs_prints_vnet_parses(tmp_path: Path) -> None:
    src = tmp_path / "flows.txt"
    src.write_text("\n".join(ROUND_TRIP) + "\n")
    r = ovs_ofctl("parse-flows", str(src))
    assert r.returncode == 0, r.stderr
    parsed = 0
    for line in r.stdout.splitlines():
        if "OFPT_FLOW_MOD" not in line:
            continue
        # "OFPT_FLOW_MOD (OF1.3) (xid=0x1): ADD table:1 priority=10,tcp,... cookie:0x5 idle:10 actions=..."
        body = line.split(": ADD ", 1)[1]
        match, _, actions = body.partition(" actions=")
        fields = [
            w for w in match.split() if not w.startswith(("table:", "cookie:", "idle:", "hard:"))
        ]
        table = next((w.split(":")[1] for w in match.split() if w.startswith("table:")), "0")
        text = f"table={table}," + ",".join(fields) + ",actions=" + actions
        parse_flow(text)
        parsed += 1
    assert parsed == len(ROUND_TRIP)

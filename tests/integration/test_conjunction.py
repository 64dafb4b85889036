"""Conjunctive matches programmed by `ovs-ofctl`, into vnet and into Open vSwitch.

The flows travel to a vnet switch through a recording proxy and must be byte
for byte what vnet encodes for the same text; `dump-flows` reads them back.
Then the same flows go into Open vSwitch, and for each packet the flow
`ovs-appctl ofproto/trace` names (by cookie) must be the one `vnet ofctl
trace` names -- conjunctions completed, incomplete, overruled by an ordinary
flow, falling back to a lower flow of the same match, at two priorities.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vnet.datapath.control import request
from vnet.testing.netns import Lab, run
from vnet.testing.ovs import ovs_netdev_bridge

from .test_ct_wire import assert_sent_as_vnet_encodes, listening_switch, recording
from .test_interop import ofctl

pytestmark = pytest.mark.integration

FLOWS = [
    "cookie=0x1,priority=10,ip,nw_src=10.0.0.1,actions=conjunction(7,1/2)",
    "cookie=0x2,priority=10,ip,nw_src=10.0.0.2,actions=conjunction(7,1/2),conjunction(8,1/2)",
    "cookie=0x3,priority=10,ip,nw_dst=10.0.0.9,actions=conjunction(7,2/2)",
    "cookie=0x4,priority=10,ip,nw_dst=10.0.0.8,actions=conjunction(8,2/2)",
    "cookie=0x6,priority=20,tcp,nw_src=10.0.1.0/24,actions=conjunction(9,1/3)",
    "cookie=0x7,priority=20,tcp,nw_dst=10.0.2.0/24,actions=conjunction(9,2/3)",
    "cookie=0x8,priority=20,tcp,tp_dst=22,actions=conjunction(9,3/3)",
    "cookie=0x9,priority=20,tcp,tp_dst=80,actions=note:00.01,conjunction(9,3/3)",
    "cookie=0x10,priority=30,tcp,nw_src=10.0.1.66,actions=output:4",
    "cookie=0x11,priority=1,conj_id=7,actions=output:1",
    "cookie=0x12,priority=1,conj_id=8,actions=output:2",
    "cookie=0x13,priority=2,conj_id=9,ip,actions=output:3",
    "cookie=0x14,priority=5,ip,nw_src=10.0.0.2,actions=output:5",
    "cookie=0x15,priority=0,actions=drop",
]
# packet -> the cookie of the flow that supplies its actions (Open vSwitch 3.1's answers)
VERDICTS = {
    "ip,nw_src=10.0.0.1,nw_dst=10.0.0.9": 0x11,
    "ip,nw_src=10.0.0.2,nw_dst=10.0.0.8": 0x12,  # the clause in two conjunctions
    "ip,nw_src=10.0.0.1,nw_dst=10.0.0.8": 0x15,  # one dimension of each: none
    "ip,nw_src=10.0.0.2,nw_dst=10.0.0.5": 0x14,  # incomplete: the same match below
    "tcp,nw_src=10.0.1.5,nw_dst=10.0.2.5,tp_dst=22": 0x13,  # three dimensions
    "tcp,nw_src=10.0.1.5,nw_dst=10.0.2.5,tp_dst=23": 0x15,  # the third missing
    "tcp,nw_src=10.0.1.66,nw_dst=10.0.2.5,tp_dst=80": 0x10,  # an ordinary flow above
    "tcp,nw_src=10.0.0.1,nw_dst=10.0.0.9,tp_dst=80": 0x11,  # priority 20 fails, 10 holds
}
# refused by ovs-ofctl before sending, as Open vSwitch refuses them
BAD = [
    ("ip,actions=conjunction(7,1/2),output:1", "may be used along with"),
    ("ip,actions=conjunction(7,3/2)", "less than or equal"),
]
_CHOSEN = re.compile(r"^ *0\. .*priority \d+, cookie (0x[0-9a-f]+)", re.M)


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[tuple[int, str, dict[str, str]]]:
    with listening_switch(tmp_path, "cj") as running:
        yield running


def vnet_trace(name: str, env: dict[str, str], packet: str) -> int:
    """The cookie of the flow the switch's own trace names (its control socket)."""
    ctl = Path(env["VNET_RUNDIR"]) / f"{name}.ctl"
    text = request(str(ctl), "trace", packet=f"in_port=LOCAL,{packet}")["text"]
    m = _CHOSEN.search(text)
    assert m, text
    return int(m.group(1), 16)


def test_ovs_ofctl_programs_conjunctions_into_vnet(switch: tuple[int, str, dict[str, str]]) -> None:
    port, name, env = switch
    with recording(port, FLOWS) as rec:
        for text, why in BAD:
            r = ofctl(rec.target, "add-flow", text)
            assert r.returncode != 0 and why in r.stderr, (text, r.stderr)
        assert rec.errors == []
        assert_sent_as_vnet_encodes(FLOWS, rec.flow_mods)
        dumped = ofctl(rec.target, "dump-flows").stdout
    for text in FLOWS:
        cookie = text.split(",", 1)[0]
        line = next(ln for ln in dumped.splitlines() if f"{cookie}," in ln)
        assert "n_packets=0" in line
        unnoted = re.sub(r"note:[0-9a-f.]+,", "", line.split("actions=")[1])
        assert unnoted == re.sub(r"note:[0-9a-f.]+,", "", text.split("actions=")[1]), line
    for packet, cookie in VERDICTS.items():
        assert vnet_trace(name, env, packet) == cookie, packet
    # `vnet ofctl trace` shows the clauses that made the conjunction
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vnet",
            "ofctl",
            "trace",
            name,
            "in_port=LOCAL," + next(iter(VERDICTS)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert "conj_id=7, priority 1, cookie 0x11" in r.stdout
    assert "conjunction(7) matched, clauses at priority 10:" in r.stdout
    assert (
        "clause 1/2: ip,nw_src=10.0.0.1" in r.stdout
        and "clause 2/2: ip,nw_dst=10.0.0.9" in r.stdout
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="Open vSwitch's netdev bridge needs a namespace")
def test_same_verdicts_as_open_vswitch(
    switch: tuple[int, str, dict[str, str]], tmp_path: Path
) -> None:
    port, name, env = switch
    flows = tmp_path / "conj.flows"
    flows.write_text("\n".join(FLOWS) + "\n")
    r = ofctl(f"tcp:127.0.0.1:{port}", "add-flows", str(flows))
    assert r.returncode == 0, r.stderr
    ovs_dir = tmp_path / "ovs"
    ovs_dir.mkdir()
    with Lab() as lab:
        target = ovs_netdev_bridge(lab, ovs_dir, [])
        r = ofctl(target, "add-flows", str(flows))
        assert r.returncode == 0, r.stderr
        bridge = Path(target.removeprefix("unix:")).stem
        for packet, cookie in VERDICTS.items():
            out = run(
                "ovs-appctl",
                "-t",
                str(ovs_dir / "vswitchd.ctl"),
                "ofproto/trace",
                bridge,
                f"in_port=LOCAL,{packet}",
            ).stdout
            m = _CHOSEN.search(out)
            assert m, out
            assert (int(m.group(1), 16), vnet_trace(name, env, packet)) == (cookie, cookie), packet

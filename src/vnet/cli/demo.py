"""`vnet demo`: the embedded default, end to end, with nothing to install.

Builds a frame, decodes it, runs it through a small multi-table flow table
(VLAN tagging, a resubmit, a register, a group) and prints the trace and the
frames that leave, decoded.
"""

from __future__ import annotations

import json

from rich.console import Console

from ..packet import decode, ethernet, extract, ipv4, tcp
from ..packet.addr import ip4_int, mac_int
from ..pipeline import (
    Bucket,
    GroupDesc,
    GroupMod,
    GroupModCommand,
    GroupType,
    Pipeline,
    Tracer,
    apply,
    parse_action,
)
from ..pipeline.ofctl import format_flow, parse_flows
from .common import heading

DEMO_FLOWS = """\
# table 0: classify by ingress port, tag with VLAN 10
table=0,priority=100,in_port=1,actions=push_vlan:0x8100,set_field:4106->vlan_vid,resubmit(,1),goto_table:2
table=0,priority=0,actions=drop
# table 1: mark web traffic in reg0
table=1,priority=10,tcp,tp_dst=80,actions=load:0x50->NXM_NX_REG0[0..15]
# table 2: web traffic to group 1 (a copy untagged to port 4, tagged to port 5), the rest to port 3
table=2,priority=20,reg0=0x50,ip,actions=dec_ttl,group:1
table=2,priority=10,actions=output:3
"""


def run_demo(console: Console) -> None:
    pipeline = Pipeline()
    pipeline.commit(
        [
            GroupMod(
                GroupModCommand.ADD,
                GroupDesc(
                    1,
                    GroupType.ALL,
                    (
                        Bucket((parse_action("pop_vlan"), parse_action("output:4"))),
                        Bucket((parse_action("output:5"),)),
                    ),
                ),
            )
        ]
    )
    flows = parse_flows(DEMO_FLOWS, "demo.flows")
    pipeline.add_flows(flows)

    src_ip, dst_ip = ip4_int("10.0.0.1"), ip4_int("10.0.0.2")
    frame = ethernet.build(
        mac_int("02:00:00:00:00:02"),
        mac_int("02:00:00:00:00:01"),
        ethernet.ETH_TYPE_IPV4,
        ipv4.build(
            src_ip,
            dst_ip,
            6,
            tcp.build(40000, 80, b"GET / HTTP/1.1\r\n\r\n", ip_src=src_ip, ip_dst=dst_ip),
        ),
    )
    heading(console, "1. a frame, decoded")
    console.print(f"hex: {frame.hex()}", highlight=False, soft_wrap=True)
    console.print_json(json.dumps(decode(frame).as_dict()["layers"]))

    heading(console, "2. the flow table")
    for f in flows:
        console.print(format_flow(f), highlight=False, soft_wrap=True)
    console.print(
        "group_id=1,type=all,bucket=actions=pop_vlan,output:4,bucket=actions=output:5",
        highlight=False,
    )

    heading(console, "3. trace")
    key = extract(frame, in_port=1)
    tracer = Tracer("demo")
    decision = pipeline.translate(key, tracer=tracer)
    console.print(tracer.format(), highlight=False, soft_wrap=True)

    heading(console, "4. frames that leave")
    for op, out in apply(frame, key, decision.odp):
        layers = decode(out).layers
        summary = " / ".join(
            layer["layer"]
            + (f"(vid={layer['vid']})" if "vid" in layer else "")
            + (
                f"(ttl={layer['ttl']},checksum_ok={layer['checksum_ok']})"
                if layer["layer"] == "ipv4"
                else ""
            )
            for layer in layers
        )
        console.print(f"{op[0]}:{op[1]}  {summary}", highlight=False)

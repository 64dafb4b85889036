"""Whatever the printer writes, the parser reads back to the same flow."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vnet.pipeline import parse_flow
from vnet.pipeline.ofctl import format_flow

match_parts = st.lists(
    st.sampled_from(
        [
            "in_port=3",
            "dl_src=02:00:00:00:00:01",
            "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00",
            "dl_vlan=42",
            "reg3=0x10/0xf0",
            "metadata=0x7",
            "tun_id=0x99",
            "ct_state=+est-new",
        ]
    ),
    unique=True,
    max_size=4,
)
proto = st.sampled_from(
    [
        "",
        "ip,nw_src=10.1.0.0/16",
        "tcp,tp_dst=443",
        "udp6,ipv6_dst=2001:db8::/48,tp_src=53",
        "arp,arp_tpa=10.0.0.1",
        "icmp,icmp_type=8",
    ]
)
actions = st.lists(
    st.sampled_from(
        [
            "output:2",
            "pop_vlan",
            "push_vlan:0x88a8",
            "set_field:02:00:00:00:00:09->eth_dst",
            "resubmit(,5)",
            "load:0x3->NXM_NX_REG1[8..9]",
            "move:NXM_NX_REG0[0..7]->NXM_NX_REG2[8..15]",
            "controller(reason=no_match,max_len=64)",
            "NORMAL",
            "note:aa.bb",
        ]
    ),
    max_size=5,
)


@given(
    st.integers(0, 200),
    st.integers(0, 0xFFFF),
    st.integers(0, 2**64 - 1),
    match_parts,
    proto,
    actions,
)
def test_print_parse_identity(
    table: int, priority: int, cookie: int, parts: list[str], p: str, acts: list[str]
) -> None:
    text = f"table={table},priority={priority},cookie={cookie:#x}," + ",".join(
        [*([p] if p else []), *parts]
    )
    text = text.rstrip(",") + ",actions=" + (",".join(acts) or "drop")
    flow = parse_flow(text).flow
    printed = format_flow(flow)
    assert parse_flow(printed).flow == flow

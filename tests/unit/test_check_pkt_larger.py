"""`check_pkt_larger(N)->dst`: text, wire, execution, and the caches around it.

The wire form was checked against Open vSwitch 3.1's `ovs-ofctl ofp-print`,
which reads the bytes below as `check_pkt_larger(1414)->NXM_NX_REG5[4]`.
"""

from __future__ import annotations

import pytest
from os_ken.ofproto import ofproto_v1_3_parser as parser
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Dot1Q, Ether

from vnet.datapath import PortConfig, Switch
from vnet.datapath.ports.memory import MemoryDevice
from vnet.ofp.convert import OFError, actions_from_ofp, actions_to_ofp
from vnet.packet import flowkey as fk
from vnet.pipeline import NullHooks, Pipeline, parse_action, parse_flow
from vnet.pipeline.actions import ActionError, CheckPktLarger, MatchInconsistent, check_consistency
from vnet.pipeline.context import packet_len
from vnet.pipeline.fields import lookup
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.ofctl import parse_packet

WIRE = "ffff00180000232000310586000400010a04000000000000"


def test_text_round_trip_in_ovs_ofctl_syntax() -> None:
    a = parse_action("check_pkt_larger(1414)->NXM_NX_REG5[4]")
    assert a == CheckPktLarger(1414, lookup("reg5").index, 4)
    assert a.format() == "check_pkt_larger(1414)->NXM_NX_REG5[4]"
    assert parse_action(a.format()) == a
    assert parse_action("check_pkt_larger(8000)->reg9[10]").format() == (
        "check_pkt_larger(8000)->NXM_NX_REG9[10]"
    )
    f = parse_flow("table=3,ip,actions=check_pkt_larger(100)->reg0[0],resubmit(,4)").flow
    assert f.instructions.apply[0] == CheckPktLarger(100, lookup("reg0").index, 0)


@pytest.mark.parametrize(
    "text, says",
    [
        ("check_pkt_larger(1414)->reg5[4..5]", "must be 1 bit"),
        ("check_pkt_larger(70000)->reg5[4]", "does not fit in 16 bits"),
        ("check_pkt_larger(1414)", "expected check_pkt_larger(LENGTH)"),
        ("check_pkt_larger(x)->reg5[4]", "invalid number"),
        ("check_pkt_larger(1414)->nosuch[0]", "unknown field"),
        ("check_pkt_larger(1414)->ct_state[0]", "read-only"),
    ],
)
def test_bad_input_is_refused_naming_the_action(text: str, says: str) -> None:
    with pytest.raises(ActionError, match=r"^check_pkt_larger: .*") as e:
        parse_action(text)
    assert says in str(e.value)


def test_a_destination_the_match_does_not_make_meaningful_is_inconsistent() -> None:
    f = parse_flow("actions=check_pkt_larger(100)->reg0[0]").flow
    check_consistency(f.match, f.instructions.apply)
    bad = parse_flow("actions=check_pkt_larger(100)->ip_dscp[0]", require_actions=False).flow
    with pytest.raises(MatchInconsistent):
        check_consistency(bad.match, bad.instructions.apply)


def test_wire_round_trip_as_open_vswitch_writes_it() -> None:
    a = parse_action("check_pkt_larger(1414)->NXM_NX_REG5[4]")
    (o,) = actions_to_ofp([a])
    buf = bytearray()
    o.serialize(buf, 0)
    assert buf.hex() == WIRE
    back = parser.OFPAction.parser(bytes.fromhex(WIRE), 0)
    assert actions_from_ofp([back]) == (a,)
    short = parser.OFPAction.parser(bytes.fromhex(WIRE[:32] + "0000000000000000"), 0)
    short.data = short.data[:6]
    with pytest.raises(OFError, match="check_pkt_larger"):
        actions_from_ofp([short])


def _pipe() -> Pipeline:
    p = Pipeline()
    p.add_flows(
        parse_flow(t).flow
        for t in (
            "table=0,priority=1,actions=check_pkt_larger(100)->reg0[0],resubmit(,1)",
            "table=1,priority=2,reg0=0x1/0x1,actions=output:3",
            "table=1,priority=1,actions=output:4",
        )
    )
    return p


def _out(d: object) -> list[int]:
    return [op[1] for op in d.odp if op[0] == "output"]  # type: ignore[attr-defined]


def test_longer_than_n_sets_the_bit_and_the_cache_keeps_to_its_side() -> None:
    p = _pipe()
    key = parse_packet("in_port=1,udp")
    assert _out(p.decide(key, NullHooks(), 0, 100)) == [4]  # not larger: equal
    assert _out(p.decide(key, NullHooks(), 0, 100)) == [4] and p.cache_hits == 1
    d = p.decide(key, NullHooks(), 0, 101)  # the same key, longer: decided again
    assert _out(d) == [3] and d.lengths == ((100, True),) and p.cache_misses == 2
    assert _out(p.decide(key, NullHooks(), 0, 1500)) == [3] and p.cache_hits == 2
    assert _out(p.decide(key, NullHooks(), 0, 60)) == [4]
    # no length known (a trace of a bare key): not larger
    assert _out(p.translate(key)) == [4]


def test_the_length_is_the_frames_without_its_vlan_tags() -> None:
    plain = bytes(Ether() / IP() / UDP() / (b"x" * 72))
    tagged = bytes(Ether() / Dot1Q(vlan=5) / IP() / UDP() / (b"x" * 72))
    assert packet_len(len(plain), fk.extract(plain)) == len(plain) == 114
    assert packet_len(len(tagged), fk.extract(tagged)) == 114


def test_the_datapath_compares_each_frame_fast_path_or_not() -> None:
    sw = Switch("sw")
    devs = {n: MemoryDevice(n) for n in ("p1", "p2", "p3")}
    for n, d in devs.items():
        sw.add_port(PortConfig(n, kind="memory"), d)
    flows = (
        "table=0,priority=1,in_port=1,actions=check_pkt_larger(114)->reg0[0],resubmit(,1)",
        "table=1,priority=2,reg0=0x1/0x1,actions=output:3",
        "table=1,priority=1,actions=output:2",
    )
    sw.commit([FlowMod(FlowModCommand.ADD, parse_flow(t).flow) for t in flows])
    p1 = sw.port_by_name("p1")
    assert p1 is not None

    def frame(n: int) -> bytes:
        return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP() / UDP() / (b"x" * (n - 42)))  # fmt: skip

    sizes = [114, 115, 114, 114, 200, 115, 60]
    for _ in range(2):  # the second round comes from the signature cache, if anything does
        sw.receive_batch(p1, [(b"", frame(n)) for n in sizes], 1.0)
        assert [len(f) for f in devs["p2"].frames()] == [n for n in sizes if n <= 114]
        assert [len(f) for f in devs["p3"].frames()] == [n for n in sizes if n > 114]

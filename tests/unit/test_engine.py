from __future__ import annotations

import pytest

from vnet.packet import ethernet, extract, ipv4, make_key, tcp
from vnet.packet import flowkey as fk
from vnet.pipeline import (
    Bucket,
    ErrorKind,
    Flow,
    FlowMod,
    FlowModCommand,
    GroupDesc,
    GroupMod,
    GroupModCommand,
    GroupType,
    Match,
    NullHooks,
    Pipeline,
    PipelineError,
    TableMiss,
    parse_action,
    parse_flow,
)
from vnet.pipeline.ofctl import parse_packet


def flow(text: str) -> Flow:
    return parse_flow(text).flow


def pipe(*texts: str) -> Pipeline:
    p = Pipeline()
    p.add_flows(flow(t) for t in texts)
    return p


def outputs(p: Pipeline, packet: str, hooks: NullHooks | None = None) -> list[object]:
    return [op[1] for op in p.translate(parse_packet(packet), hooks).odp if op[0] == "output"]


def test_priority_and_table_miss() -> None:
    p = pipe("priority=10,ip,actions=output:2", "priority=20,ip,nw_dst=10.0.0.1,actions=output:3")
    assert outputs(p, "in_port=1,ip,nw_dst=10.0.0.1") == [3]
    assert outputs(p, "in_port=1,ip,nw_dst=10.0.0.9") == [2]
    d = p.translate(parse_packet("in_port=1,arp"))
    assert d.odp == () and d.drop_reason == "no_match"


def test_table_miss_continue_and_controller() -> None:
    p = Pipeline(n_tables=3, miss=TableMiss.CONTINUE)
    p.add_flows([flow("table=1,actions=output:5")])
    assert outputs(p, "in_port=1") == [5]
    p = Pipeline(miss=TableMiss.CONTROLLER)
    d = p.translate(parse_packet("in_port=1"))
    assert d.odp[0][:2] == ("controller", "no_match")


def test_add_replaces_identical_match_and_priority() -> None:
    p = pipe("priority=5,in_port=1,actions=output:2")
    p.add_flows([flow("priority=5,in_port=1,actions=output:3")])
    assert len(p.rules()) == 1 and outputs(p, "in_port=1") == [3]


def test_modify_and_delete_strict_and_non_strict() -> None:
    p = pipe(
        "priority=5,ip,nw_dst=10.0.0.1,actions=output:2",
        "priority=6,ip,actions=output:3",
        "priority=7,arp,actions=output:4",
    )
    p.commit([FlowMod(FlowModCommand.MODIFY, flow("ip,actions=output:9"))])
    assert outputs(p, "in_port=1,ip,nw_dst=10.0.0.1") == [9] and outputs(p, "in_port=1,arp") == [4]
    p.commit([FlowMod(FlowModCommand.DELETE_STRICT, flow("priority=6,ip,actions=drop"))])
    assert len(p.rules()) == 2
    removed = p.commit([FlowMod(FlowModCommand.DELETE, Flow(table=0xFF))])
    assert len(removed) == 2 and p.rules() == []


def test_delete_filters_cookie_and_out_port() -> None:
    p = pipe(
        "cookie=0x11,priority=1,in_port=1,actions=output:2",
        "cookie=0x21,priority=2,in_port=1,actions=output:3",
    )
    p.commit([FlowMod(FlowModCommand.DELETE, Flow(table=0xFF, cookie=0x20), cookie_mask=0xF0)])
    assert [r.flow.cookie for r in p.rules()] == [0x11]
    p = pipe("priority=1,in_port=1,actions=output:2", "priority=2,in_port=1,actions=output:3")
    p.commit([FlowMod(FlowModCommand.DELETE, Flow(table=0xFF), out_port=3)])
    assert outputs(p, "in_port=1") == [2]


def test_batch_is_atomic() -> None:
    p = pipe("priority=1,actions=output:2")
    v = p.version
    bad = [
        FlowMod(FlowModCommand.ADD, flow("priority=9,actions=output:7")),
        FlowMod(FlowModCommand.ADD, flow("table=3,actions=goto_table:2")),
    ]
    with pytest.raises(PipelineError) as e:
        p.commit(bad)
    assert e.value.kind == ErrorKind.BAD_GOTO
    assert p.version == v and len(p.rules()) == 1 and outputs(p, "in_port=1") == [2]


def test_group_validation() -> None:
    p = Pipeline()
    with pytest.raises(PipelineError) as e:
        p.add_flows([flow("actions=group:5")])
    assert e.value.kind == ErrorKind.BAD_OUT_GROUP
    with pytest.raises(PipelineError) as e:
        p.commit([GroupMod(GroupModCommand.ADD, GroupDesc(1, GroupType.INDIRECT, ()))])
    assert e.value.kind == ErrorKind.BAD_BUCKET
    p.commit(
        [
            GroupMod(
                GroupModCommand.ADD,
                GroupDesc(1, GroupType.ALL, (Bucket((parse_action("output:2"),)),)),
            )
        ]
    )
    with pytest.raises(PipelineError) as e:
        p.commit([GroupMod(GroupModCommand.ADD, GroupDesc(1, GroupType.ALL, ()))])
    assert e.value.kind == ErrorKind.GROUP_EXISTS
    p.add_flows([flow("actions=group:1")])
    removed = p.commit([GroupMod(GroupModCommand.DELETE, GroupDesc(1, GroupType.ALL))])
    assert len(removed) == 1 and p.rules() == []


def _select_pipeline(n: int) -> Pipeline:
    p = Pipeline()
    buckets = tuple(
        Bucket((parse_action(f"output:{10 + i}"),), watch_port=10 + i) for i in range(n)
    )
    p.commit([GroupMod(GroupModCommand.ADD, GroupDesc(1, GroupType.SELECT, buckets))])
    p.add_flows([flow("actions=group:1")])
    return p


def test_select_group_spreads_and_is_stable() -> None:
    p = _select_pipeline(3)
    counts = {10: 0, 11: 0, 12: 0}
    for i in range(1000):
        key = parse_packet(
            f"in_port=1,tcp,nw_src=10.0.{i // 250}.{i % 250},nw_dst=10.1.0.1,tp_src={1024 + i},tp_dst=80"
        )
        clone = p.translate(key).odp[0]
        port = clone[1][0][1]
        counts[port] += 1
        assert p.translate(key).odp[0] == clone
    for c in counts.values():
        assert abs(c - 1000 / 3) <= 0.15 * 1000 / 3, counts


class DeadPorts(NullHooks):
    def __init__(self, dead: set[int]) -> None:
        super().__init__()
        self.dead = dead

    def port_live(self, port: int) -> bool:
        return port not in self.dead


def test_fast_failover_takes_first_live_bucket() -> None:
    p = Pipeline()
    buckets = (
        Bucket((parse_action("output:2"),), watch_port=2),
        Bucket((parse_action("output:3"),), watch_port=3),
    )
    p.commit([GroupMod(GroupModCommand.ADD, GroupDesc(7, GroupType.FAST_FAILOVER, buckets))])
    p.add_flows([flow("actions=group:7")])
    key = parse_packet("in_port=1")
    assert p.translate(key, DeadPorts(set())).odp == (("clone", (("output", 2),)),)
    assert p.translate(key, DeadPorts({2})).odp == (("clone", (("output", 3),)),)
    assert p.translate(key, DeadPorts({2, 3})).odp == ()


def test_output_to_in_port_is_skipped_and_flood() -> None:
    p = pipe("actions=output:1,output:2")
    assert outputs(p, "in_port=1") == [2]
    p = pipe("actions=flood")
    assert outputs(p, "in_port=2", NullHooks([1, 2, 3])) == [1, 3]
    p = pipe("actions=in_port")
    assert outputs(p, "in_port=4") == [4]


def test_resubmit_restores_in_port_and_is_bounded() -> None:
    p = pipe(
        "table=0,in_port=1,actions=resubmit(9,1),output:2", "table=1,in_port=9,actions=output:3"
    )
    assert outputs(p, "in_port=1") == [3, 2]
    loop = pipe("actions=resubmit(,0)")
    d = loop.translate(parse_packet("in_port=1"))
    assert d.drop_reason == "resubmit_limit"


def test_action_set_order_and_clear() -> None:
    p = pipe(
        "table=0,actions=write_actions(output:2,set_field:10.0.0.9->ip_dst),goto_table:1",
        "table=1,ip,actions=write_actions(dec_ttl)",
    )
    d = p.translate(parse_packet("in_port=1,ip,nw_dst=10.0.0.1,nw_ttl=5"))
    assert d.odp == (("set", fk.IP_TTL, 4), ("set", fk.IPV4_DST, 0x0A000009), ("output", 2))
    p = pipe(
        "table=0,actions=write_actions(output:2),goto_table:1", "table=1,actions=clear_actions"
    )
    assert p.translate(parse_packet("in_port=1")).odp == ()


def test_write_metadata_and_registers() -> None:
    p = pipe(
        "table=0,actions=load:0x3->NXM_NX_REG1[4..7],move:NXM_NX_REG1[4..7]->NXM_NX_REG2[0..3],write_metadata:0x5/0xff,goto_table:1",
        "table=1,metadata=0x5,reg1=0x30,reg2=0x3,actions=output:8",
    )
    assert outputs(p, "in_port=1") == [8]


def test_dec_ttl_expires() -> None:
    p = pipe("ip,actions=dec_ttl,output:2")
    d = p.translate(parse_packet("in_port=1,ip,nw_ttl=1"))
    assert d.odp == () and d.drop_reason == "ttl_expired"


def test_decision_cache_invalidated_by_flow_changes() -> None:
    p = pipe("priority=1,actions=output:2")
    key = make_key(in_port=1)
    assert p.decide(key, NullHooks()).odp == (("output", 2),)
    assert p.decide(key, NullHooks()).odp == (("output", 2),)
    assert p.cache_hits == 1
    p.add_flows([flow("priority=2,actions=output:3")])
    assert p.decide(key, NullHooks()).odp == (("output", 3),)


def test_counters_and_timeouts() -> None:
    p = Pipeline()
    p.add_flows([flow("idle_timeout=10,hard_timeout=100,priority=1,actions=output:2")], now=0.0)
    frame = ethernet.build(2, 1, 0x0800, ipv4.build(1, 2, 6, tcp.build(1, 2, ip_src=1, ip_dst=2)))
    d = p.decide(extract(frame, 1), NullHooks())
    p.account(d, len(frame), now=5.0)
    r = p.rules()[0]
    assert (r.packet_count, r.byte_count, p.tables[0].lookups, p.tables[0].matches) == (
        1,
        len(frame),
        1,
        1,
    )
    assert p.expire(14.0) == []
    gone = p.expire(15.0)
    assert [reason for _r, reason in gone] == ["idle_timeout"]


def test_check_overlap() -> None:
    p = pipe("priority=5,ip,actions=output:2")
    with pytest.raises(PipelineError) as e:
        p.add_flows([flow("priority=5,ip,nw_dst=10.0.0.1,check_overlap,actions=output:3")])
    assert e.value.kind == ErrorKind.OVERLAP


def test_match_covers() -> None:
    wide = Match.of(eth_type=0x0800)
    narrow = Match.of(eth_type=0x0800, ipv4_dst=(0x0A000000, 0xFFFFFF00))
    assert wide.covers(narrow) and not narrow.covers(wide)

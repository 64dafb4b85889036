"""Conjunctive matches (Open vSwitch's `conjunction` action and `conj_id` field).

Every expected verdict here is what `ovs-appctl ofproto/trace` answers for the
same flows in Open vSwitch 3.1; tests/integration/test_conjunction.py holds a
few of them against a running Open vSwitch.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from vnet.compiler import stages
from vnet.compiler.stages import NEXT, Stage
from vnet.pipeline import (
    Flow,
    FlowMod,
    FlowModCommand,
    NullHooks,
    Pipeline,
    PipelineError,
    parse_flow,
)
from vnet.pipeline.actions import Conjunction, Note, Output
from vnet.pipeline.flow import Instructions
from vnet.pipeline.ofctl import (
    FlowSyntaxError,
    format_dump,
    format_flow,
    parse_packet,
)
from vnet.pipeline.trace import Tracer

SRC1, SRC2, DST9, DST8 = "nw_src=10.0.0.1", "nw_src=10.0.0.2", "nw_dst=10.0.0.9", "nw_dst=10.0.0.8"


def flow(text: str) -> Flow:
    return parse_flow(text).flow


def pipe(*texts: str) -> Pipeline:
    p = Pipeline()
    p.add_flows(flow(t) for t in texts)
    return p


def verdict(p: Pipeline, packet: str) -> str | None:
    """The flow that supplied the actions: its match (or "*") and priority."""
    d = p.translate(parse_packet("in_port=99," + packet), NullHooks())
    if not d.rules:
        return None
    r = d.rules[0]
    return f"{format_flow(r.flow).split('actions=')[0].removeprefix('table=0,')}".rstrip(",")


TWO = (
    f"priority=10,ip,{SRC1},actions=conjunction(7,1/2)",
    f"priority=10,ip,{SRC2},actions=conjunction(7,1/2),conjunction(8,1/2)",
    f"priority=10,ip,{DST9},actions=conjunction(7,2/2)",
    f"priority=10,ip,{DST8},actions=conjunction(8,2/2)",
    "priority=1,conj_id=7,actions=output:1",
    "priority=1,conj_id=8,actions=output:2",
    "priority=0,actions=output:3",
)


def test_two_dimensions_and_a_clause_in_two_conjunctions() -> None:
    p = pipe(*TWO)
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=1,conj_id=7"
    assert verdict(p, f"ip,{SRC2},{DST9}") == "priority=1,conj_id=7"
    assert verdict(p, f"ip,{SRC2},{DST8}") == "priority=1,conj_id=8"
    # one dimension of each, but not of the same conjunction
    assert verdict(p, f"ip,{SRC1},{DST8}") == "priority=0"
    # one dimension missing
    assert verdict(p, f"ip,{SRC1},nw_dst=10.0.0.5") == "priority=0"
    assert verdict(p, f"ip,nw_src=10.0.0.5,{DST9}") == "priority=0"


def test_three_dimensions_need_all_three() -> None:
    p = pipe(
        f"priority=10,ip,{SRC1},actions=conjunction(7,1/3)",
        f"priority=10,ip,{DST9},actions=conjunction(7,2/3)",
        "priority=10,tcp,tp_dst=80,actions=conjunction(7,3/3)",
        "priority=10,tcp,tp_dst=443,actions=conjunction(7,3/3)",
        "priority=10,ip,nw_src=10.0.0.0/24,actions=conjunction(7,1/3)",  # dimension 1 again
        "priority=1,conj_id=7,actions=output:7",
        "priority=0,actions=output:1",
    )
    assert verdict(p, f"tcp,{SRC1},{DST9},tp_dst=80") == "priority=1,conj_id=7"
    assert verdict(p, f"tcp,{SRC1},{DST9},tp_dst=443") == "priority=1,conj_id=7"
    for missing in (
        f"tcp,{SRC1},{DST9},tp_dst=81",
        f"tcp,{SRC1},nw_dst=10.0.0.5,tp_dst=80",
        f"tcp,nw_src=10.0.1.5,{DST9},tp_dst=80",
        f"udp,{SRC1},{DST9},tp_dst=80",
    ):
        assert verdict(p, missing) == "priority=0", missing


def test_an_ordinary_flow_of_higher_or_equal_priority_wins() -> None:
    base = (*TWO[:4], "priority=1,conj_id=7,actions=output:1", "priority=0,actions=output:3")
    p = pipe(*base, f"priority=20,ip,{DST9},actions=output:20")
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=20,ip,nw_dst=10.0.0.9"
    # at the clauses' own priority the ordinary flow wins too
    p = pipe(*base, f"priority=10,ip,{SRC1},{DST9},actions=output:10")
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=10,ip,nw_src=10.0.0.1,nw_dst=10.0.0.9"


def test_clauses_below_a_matching_ordinary_flow_do_not_count() -> None:
    p = pipe(
        f"priority=10,ip,{SRC1},actions=conjunction(7,1/2)",
        f"priority=10,ip,{DST9},actions=conjunction(7,2/2)",
        "priority=30,conj_id=7,actions=output:30",
        "priority=20,ip,actions=output:20",
    )
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=20,ip"


def test_the_conj_id_lookup_is_an_ordinary_lookup() -> None:
    # an ordinary flow between the clauses and the conj_id flow outranks the latter
    p = pipe(*TWO[:4], "priority=1,conj_id=7,actions=output:1", "priority=5,ip,actions=output:5")
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=5,ip"
    # ... unless a clause of the same match hides it (the lookup skips clauses)
    p = pipe(*TWO[:4], "priority=1,conj_id=7,actions=output:1", f"priority=5,ip,{DST9},actions=5")
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=1,conj_id=7"
    # a conj_id flow above the clauses is found all the same
    p = pipe(*TWO[:4], "priority=40,conj_id=7,actions=output:1", "priority=0,actions=drop")
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=40,conj_id=7"
    # conj_id can be matched with other fields
    p = pipe(
        *TWO[:4], "priority=1,conj_id=7,ip,nw_ttl=64,actions=output:1", "priority=0,actions=drop"
    )
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=1,conj_id=7,ip,nw_ttl=64"
    assert verdict(p, f"ip,{SRC1},{DST9},nw_ttl=5") == "priority=0"


def test_without_a_conj_id_flow_the_search_goes_on() -> None:
    p = pipe(*TWO[:4], "priority=3,ip,actions=output:3", "priority=0,actions=drop")
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=3,ip"
    p = pipe(*TWO[:4])
    assert verdict(p, f"ip,{SRC1},{DST9}") is None


def test_clauses_of_different_priorities_do_not_combine() -> None:
    p = pipe(
        f"priority=10,ip,{SRC1},actions=conjunction(7,1/2)",
        f"priority=9,ip,{DST9},actions=conjunction(7,2/2)",
        "priority=1,conj_id=7,actions=output:1",
        "priority=0,actions=drop",
    )
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=0"


def test_an_incomplete_conjunction_makes_way_for_lower_flows_of_the_same_match() -> None:
    p = pipe(
        f"priority=10,ip,{SRC1},actions=conjunction(7,1/2)",
        f"priority=5,ip,{SRC1},actions=output:5",
        "priority=7,conj_id=7,actions=output:7",
        "priority=1,actions=output:1",
    )
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=5,ip,nw_src=10.0.0.1"
    # ... and for lower clauses of the same match, which may complete another
    p = pipe(
        f"priority=10,ip,{SRC1},actions=conjunction(7,1/2)",
        "priority=10,ip,nw_dst=10.0.0.7,actions=conjunction(7,2/2)",
        f"priority=8,ip,{SRC1},actions=conjunction(8,1/2)",
        f"priority=8,ip,{DST9},actions=conjunction(8,2/2)",
        "priority=1,conj_id=7,actions=output:7",
        "priority=1,conj_id=8,actions=output:8",
        "priority=0,actions=output:1",
    )
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=1,conj_id=8"
    assert verdict(p, f"ip,{SRC1},nw_dst=10.0.0.7") == "priority=1,conj_id=7"


def test_inconsistent_clause_counts_as_open_vswitch_counts_them() -> None:
    flows = (
        f"priority=10,ip,{SRC1},actions=conjunction(7,1/2)",
        f"priority=10,ip,{DST9},actions=conjunction(7,2/3)",
        "priority=1,conj_id=7,actions=output:1",
        "priority=0,actions=drop",
    )
    # accepted, but two soft matches cannot fill a conjunction of three
    p = pipe(*flows)
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=0"
    # a third soft match completes it: the bitmap started from the first n seen
    p = pipe(*flows, "priority=10,ip,nw_tos=4,actions=conjunction(7,3/3)")
    assert verdict(p, f"ip,{SRC1},{DST9},nw_tos=4") == "priority=1,conj_id=7"


def test_conj_id_is_zero_for_a_packet() -> None:
    p = pipe(
        "priority=4,conj_id=0,ip,nw_src=10.0.0.5,actions=output:4",
        "priority=3,ip,actions=output:3",
        "priority=9,conj_id=5,actions=output:9",
    )
    assert verdict(p, "ip,nw_src=10.0.0.5") == "priority=4,conj_id=0,ip,nw_src=10.0.0.5"
    assert verdict(p, "ip,nw_src=10.0.0.6") == "priority=3,ip"


def test_a_64_clause_conjunction_needs_every_clause() -> None:
    """64 soft matches (one subtable per prefix length), one of them clause 1/64 of
    conjunction 9.  Open vSwitch 3.1 starts a 64-clause bitmap full and answers
    conj_id=9 here; vnet keeps to the documented meaning: every dimension needed."""
    src = [str(ipaddress.ip_network(f"10.0.0.1/{n}", strict=False)) for n in range(1, 33)]
    dst = [str(ipaddress.ip_network(f"10.0.0.9/{n}", strict=False)) for n in range(1, 32)]
    p = pipe(
        *(f"priority=10,ip,nw_src={a},actions=conjunction(10,1/2)" for a in src),
        *(f"priority=10,ip,nw_dst={a},actions=conjunction(10,1/2)" for a in dst),
        "priority=10,ip,nw_dst=10.0.0.9,actions=conjunction(9,1/64)",
        "priority=1,conj_id=9,actions=output:9",
        "priority=1,conj_id=10,actions=output:10",
        "priority=0,actions=drop",
    )
    assert p.tables[0].classifier.subtable_count == 66  # 64 prefixes, conj_id, catch-all
    assert verdict(p, f"ip,{SRC1},{DST9}") == "priority=0"


def test_deleting_and_modifying_clauses() -> None:
    p = pipe(*TWO)
    key = parse_packet(f"in_port=99,ip,{SRC1},{DST9}")
    assert p.decide(key, NullHooks()).odp == (("output", 1),)
    p.commit([FlowMod(FlowModCommand.DELETE_STRICT, flow(f"priority=10,ip,{DST9},actions=drop"))])
    assert p.decide(key, NullHooks()).odp == (("output", 3),)  # the cached decision is gone
    p.add_flows([flow(f"priority=10,ip,{DST9},actions=conjunction(7,2/2)")])
    assert p.decide(key, NullHooks()).odp == (("output", 1),)
    # a clause modified into an ordinary flow is one: it matches by itself
    p.commit(
        [FlowMod(FlowModCommand.MODIFY_STRICT, flow(f"priority=10,ip,{DST9},actions=output:4"))]
    )
    assert p.decide(key, NullHooks()).odp == (("output", 4),)
    # and back
    p.commit(
        [
            FlowMod(
                FlowModCommand.MODIFY_STRICT,
                flow(f"priority=10,ip,{DST9},actions=conjunction(7,2/2)"),
            )
        ]
    )
    assert p.decide(key, NullHooks()).odp == (("output", 1),)
    p.commit([FlowMod(FlowModCommand.DELETE, flow("ip,actions=drop"))])
    assert p.decide(key, NullHooks()).odp == (("output", 3),)
    assert len(p.tables[0].classifier) == 3 and p.tables[0].classifier.clause_count == 0


def test_only_the_conj_id_flow_is_charged() -> None:
    p = pipe(*TWO)
    key = parse_packet(f"in_port=99,ip,{SRC1},{DST9}")
    for _ in range(3):
        p.account(p.decide(key, NullHooks()), 100, 5.0)
    assert p.cache_hits == 2
    counts = {format_flow(r.flow): (r.packet_count, r.byte_count, r.used) for r in p.rules()}
    assert counts.pop("table=0,priority=1,conj_id=7,actions=output:1") == (3, 300, 5.0)
    # the clauses are never charged, nor used: an idle timeout expires them, as in OVS
    assert set(counts.values()) == {(0, 0, 0.0)}
    assert len(format_dump(p.rules()[0]).split("n_packets=0")) == 2  # dump-flows shows them


def test_trace_shows_the_clauses() -> None:
    p = pipe(*TWO)
    t = Tracer()
    p.translate(parse_packet(f"in_port=99,ip,{SRC2},{DST8}"), NullHooks(), t)
    text = t.format()
    assert "0. conj_id=8, priority 1" in text
    assert "conjunction(8) matched, clauses at priority 10:" in text
    assert "clause 1/2: ip,nw_src=10.0.0.2" in text and "clause 2/2: ip,nw_dst=10.0.0.8" in text
    table = t.as_dict()["tables"][0]
    assert table["conjunction"]["id"] == 8
    assert [c["clause"] for c in table["conjunction"]["clauses"]] == ["1/2", "2/2"]
    # no conjunction, nothing about one
    t = Tracer()
    p.translate(parse_packet(f"in_port=99,ip,{SRC1},{DST8}"), NullHooks(), t)
    assert "conjunction" not in t.format() and "conjunction" not in t.as_dict()["tables"][0]


def test_executing_a_conjunction_does_nothing() -> None:
    d = Pipeline().execute(parse_packet("in_port=1,ip"), [Conjunction(7, 1, 2)], NullHooks())
    assert d.odp == () and d.drop_reason == "no_output"


# -- text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "table=0,priority=10,ip,nw_src=10.0.0.1,actions=conjunction(7,1/2)",
        "table=3,priority=10,tcp,tp_dst=80,actions=conjunction(7,2/3),conjunction(4294967295,64/64)",
        "table=0,priority=10,ip,actions=note:01.02.00.00.00.00,conjunction(1,2/2)",
        "table=0,priority=1,conj_id=7,actions=output:1",
        "table=0,priority=1,conj_id=7,ct_state=+est+trk,ip,nw_dst=10.0.0.1,actions=output:1",
    ],
)
def test_text_round_trip(text: str) -> None:
    f = flow(text)
    assert format_flow(f) == text
    assert flow(format_flow(f)) == f


def test_parse_spellings() -> None:
    a = flow("ip,actions=conjunction( 0x10 , 1 / 2 )").instructions.apply
    assert a == (Conjunction(16, 1, 2),)
    assert flow("conj_id=0x10,actions=drop").match == flow("conj_id=16,actions=drop").match
    ins = flow("ip,actions=note:aa,conjunction(7,2/2)").instructions
    assert [type(x) for x in ins.apply] == [Note, Conjunction]


@pytest.mark.parametrize(
    ("text", "token", "message"),
    [
        ("ip,actions=conjunction(7,3/2)", "conjunction(7,3/2)", "less than or equal to number"),
        ("ip,actions=conjunction(7,1/65)", "conjunction(7,1/65)", "at most 64 clauses"),
        ("ip,actions=conjunction(7,1/1)", "conjunction(7,1/1)", "at least 2 clauses"),
        ("ip,actions=conjunction(7,0/2)", "conjunction(7,0/2)", "clause index must be positive"),
        ("ip,actions=conjunction(4294967296,1/2)", "conjunction(4294967296,1/2)", "32 bits"),
        ("ip,actions=conjunction(7,1/0x2)", "conjunction(7,1/0x2)", "syntax is"),
        ("ip,actions=conjunction(7 1/2)", "conjunction(7 1/2)", "syntax is"),
        ("ip,actions=conjunction(7)", "conjunction(7)", "syntax is"),
        ("ip,actions=conjunction:7", "conjunction:7", "syntax is"),
        ("ip,actions=conjunction(7,1/2),output:1", "output:1", "such as 'output:1'"),
        ("ip,actions=output:1,conjunction(7,1/2)", "output:1", 'along with "note"'),
        ("ip,actions=conjunction(7,1/2),goto_table:2", "goto_table:2", "goto_table:2"),
        ("ip,actions=meter:1,conjunction(7,1/2)", "meter:1", "meter:1"),
        ("ip,actions=conjunction(7,1/2),write_metadata:1", "write_metadata:1", "write_metadata"),
        (
            "ip,actions=write_actions(conjunction(7,1/2))",
            "write_actions(conjunction(7,1/2))",
            "not allowed in write_actions",
        ),
        ("conj_id=7/0xff,actions=drop", "conj_id=7/0xff", "not maskable"),
        ("ip,actions=move:NXM_NX_CONJ_ID[]->NXM_NX_REG0[]", "move:", "can only be matched"),
        ("ip,actions=set_field:1->conj_id", "set_field:1->conj_id", "read-only"),
    ],
)
def test_bad_text_names_the_token(text: str, token: str, message: str) -> None:
    with pytest.raises(FlowSyntaxError) as e:
        parse_flow(text)
    assert e.value.token.startswith(token), e.value.token
    assert message in str(e.value)
    assert e.value.column == text.index(e.value.token) + 1


def test_conj_id_is_no_packet_field() -> None:
    with pytest.raises(FlowSyntaxError) as e:
        parse_packet("in_port=1,ip,conj_id=7")
    assert e.value.token == "conj_id" and "not a packet field" in str(e.value)


def test_the_pipeline_refuses_a_conjunction_with_other_actions() -> None:
    p = Pipeline()
    bad = Flow(instructions=Instructions(apply=(Conjunction(7, 1, 2), Output(1))))
    with pytest.raises(PipelineError, match="conjunction"):
        p.add_flows([bad])
    bad = Flow(instructions=Instructions(apply=(Conjunction(7, 1, 2),), goto=3))
    with pytest.raises(PipelineError, match="goto_table:3"):
        p.add_flows([bad])
    bad = Flow(instructions=Instructions(write=(Conjunction(7, 1, 2),)))
    with pytest.raises(PipelineError, match="write_actions"):
        p.add_flows([bad])
    assert p.rules() == []


def test_the_compilers_check_takes_conjunctive_flows() -> None:
    # a stage that declares conj_id may hold a conjunction's flow and its clauses
    acl = Stage("ls_in_trial_acl", ("eth_type", "ipv4_src", "ipv4_dst", "conj_id"), (NEXT,), "acl")
    ls = stages.SWITCH
    with stages.declared(replace(ls, ingress=(ls.ingress[0], acl, *ls.ingress[1:]))):
        t = stages.table("ls_in_trial_acl")
        stages.check(flow(f"table={t},priority=10,ip,{SRC1},actions=conjunction(7,1/2)"))
        stages.check(flow(f"table={t},priority=1,conj_id=7,actions=goto_table:{t + 1}"))
        with pytest.raises(stages.StageError, match="undeclared field"):
            stages.check(flow(f"table={t + 1},priority=1,conj_id=7,actions=drop"))

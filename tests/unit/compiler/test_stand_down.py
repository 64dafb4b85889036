"""The flows that make a chassis a router's active gateway stand down while its switch
is isolated: the compiler marks exactly those (`LFlow.stands_down`, gathered per
chassis by `standing_down`), and a vnet switch holding them stops answering for the
gateway and its floating IP while isolated, and answers again when it is not.

The model is `test_failover`'s: hv1 holds the workload and has no uplink, hv2 and
hv3 are the router's gateway chassis, the floating IP is not distributed.
"""

from __future__ import annotations

from vnet.compiler import Compiler
from vnet.compiler.logical import LFlow, standing_down
from vnet.model.objects import Chassis, Router
from vnet.model.rules import State

from .test_failover import FIP, GWIP, HV2_DOWN, answers_arp, model, reaches_fip
from .test_localnet import UPLINK, Rig


def _resident(lflows: list[LFlow], chassis: str) -> list[LFlow]:
    return [lf for lf in lflows if lf.resident == (chassis, True)]


def test_exactly_the_active_gateway_s_resident_flows_stand_down() -> None:
    lflows = Compiler().compile(model())
    marked, shared = standing_down(lflows)
    assert shared == set()
    assert set(marked) == {"hv2"}  # the active gateway chassis only
    on_hv2 = _resident(lflows, "hv2")
    assert on_hv2 and marked["hv2"] == {lf.flow.cookie for lf in on_hv2}
    assert all(lf.stands_down == (lf.resident == ("hv2", True)) for lf in lflows)
    rules = {lf.rule for lf in on_hv2}
    assert f"gateway IPv4 (subnet se): arp reply for {GWIP}" in rules
    assert f"gateway: arp reply for floating IP {FIP}" in rules
    assert any(r.endswith("(active gateway chassis)") for r in rules)  # routes out of it
    # the redirect to it elsewhere (not resident there) does not stand down
    assert all(not lf.stands_down for lf in lflows if lf.resident == ("hv2", False))
    # failed over: hv3's, and none of hv2's
    after = Compiler().compile(model(HV2_DOWN))
    marked, _ = standing_down(after)
    assert set(marked) == {"hv3"}
    assert marked["hv3"] == {lf.flow.cookie for lf in _resident(after, "hv3")}


def _with(st: State, *objs: object) -> State:
    out = {k: dict(v) for k, v in st.objects.items()}
    for o in objs:
        out[o.kind][o.id] = o  # type: ignore[attr-defined]
    return State.of([o for v in out.values() for o in v.values()])


def test_a_distributed_floating_ip_and_a_single_gateway_chassis_do_not_stand_down() -> None:
    st = model()
    hv1 = st.get("chassis", "hv1")
    assert isinstance(hv1, Chassis)
    distributed = _with(st, hv1.changed(physnets={"phys": UPLINK}))
    lflows = Compiler().compile(distributed)
    fip_here = [lf for lf in _resident(lflows, "hv1") if lf.owner == ("floating_ip", "f")]
    assert fip_here and not any(lf.stands_down for lf in fip_here)
    marked, _ = standing_down(lflows)
    assert set(marked) == {"hv2"}
    assert not any(lf.owner == ("floating_ip", "f") for lf in _resident(lflows, "hv2"))
    r = st.get("router", "r1")
    assert isinstance(r, Router) and r.gateway is not None
    alone = _with(st, r.changed(gateway=r.gateway.model_copy(update={"chassis": ["hv2"]})))
    lflows = Compiler().compile(alone)
    assert _resident(lflows, "hv2") and standing_down(lflows) == ({}, set())


def test_an_isolated_gateway_chassis_stops_answering_and_translating() -> None:
    st = model()
    rig = Rig(st)
    marked, _ = standing_down(Compiler().compile(st))
    hv2, hv3 = rig.switches["hv2"], rig.switches["hv3"]
    hv2.set_stand_down(marked["hv2"])
    hv3.set_stand_down(marked.get("hv3", ()))
    assert answers_arp(rig, "hv2", GWIP) and answers_arp(rig, "hv2", FIP)
    assert reaches_fip(rig, "hv2")
    n = sum(len(t.by_id) for t in hv2.pipeline.tables)
    hv2.pipeline.set_isolated(True)  # what its BFD monitor says when every session is down
    assert not answers_arp(rig, "hv2", GWIP) and not answers_arp(rig, "hv2", FIP)
    assert not reaches_fip(rig, "hv2")
    assert sum(len(t.by_id) for t in hv2.pipeline.tables) == n  # nothing was deleted
    assert len(hv2.pipeline.asleep) == len(marked["hv2"])
    hv3.pipeline.set_isolated(True)  # the standby has nothing that stands down
    assert hv3.pipeline.asleep == set()
    hv2.pipeline.set_isolated(False)
    assert answers_arp(rig, "hv2", GWIP) and answers_arp(rig, "hv2", FIP)
    assert reaches_fip(rig, "hv2")

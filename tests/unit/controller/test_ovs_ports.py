"""What the controller plugs into an Open vSwitch chassis' bridge."""

from __future__ import annotations

from vnet.controller.service import ovs_ports
from vnet.model.objects import Chassis, Network, Port, Tenant
from vnet.model.rules import State


def test_the_uplinks_of_the_chassis_physnets_are_plugged_with_its_ports() -> None:
    state = State.of([
        Tenant(id="t", name="t"),
        Chassis(id="hv1", name="hv1", switch="ovs", physnets={"phys": "up-phys", "dc": "eth9"}),
        Chassis(id="hv2", name="hv2", switch="ovs", physnets={"phys": "up-other"}),
        Network(id="n", name="n", tenant="t", external=True, physnet="phys"),
        Port(id="a", name="a", network="n", tenant="t", chassis="hv1"),
        Port(id="b", name="b", network="n", tenant="t", chassis="hv2"),
    ])  # fmt: skip
    a = state.get("port", "a")
    assert ovs_ports(state, state.get("chassis", "hv1")) == {
        a.iface: "a", "up-phys": "physnet:phys", "eth9": "physnet:dc"}  # fmt: skip
    hv2 = Chassis(id="hv2", name="hv2", switch="ovs")
    assert "up-other" not in ovs_ports(state, hv2)

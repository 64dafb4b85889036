"""A lab with a router: workloads' addresses and default routes, and the simulated
lab routing across subnets (examples/east-west.yaml)."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from vnet.lab.addressing import (
    Address,
    addresses,
    default_routes,
    hosts_file,
    routed_subnets,
)
from vnet.lab.sim import SimLab
from vnet.packet.addr import ip4_int, ip6_int, mac_int

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((ROOT / "examples/east-west.yaml").read_text())

SUBNETS = {
    "s4": {"cidr": "10.1.0.0/24", "gateway": "10.1.0.1"},
    "s6": {"cidr": "fd00:1::/64", "gateway": "fd00:1::1"},
    "t4": {"cidr": "10.9.0.0/16", "gateway": "10.9.0.254"},
}


def test_addresses_carry_the_gateway_of_routed_subnets_only() -> None:
    port = {"fixed_ips": [{"subnet": "s4", "ip": "10.1.0.11"}, {"subnet": "s6", "ip": "fd00:1::11"},
                          {"subnet": "t4", "ip": "10.9.0.5"}]}  # fmt: skip
    routed = routed_subnets([{"interfaces": [{"subnet": "s4"}, {"subnet": "s6"}]}, {}])
    assert routed == {"s4", "s6"}
    addrs = addresses(port, SUBNETS, routed)
    assert addrs == [
        Address("10.1.0.11", 24, 4, "10.1.0.1"),
        Address("fd00:1::11", 64, 6, "fd00:1::1"),
        Address("10.9.0.5", 16, 4, None),
    ]
    assert default_routes(addrs) == {4: "10.1.0.1", 6: "fd00:1::1"}
    # the first routed subnet of a family is the way out; none routed, no route
    both = addresses(port, SUBNETS, {"t4", "s4"})
    assert default_routes(both) == {4: "10.1.0.1"}
    assert default_routes(addresses(port, SUBNETS, set())) == {}


def test_hosts_file_names_every_address() -> None:
    text = hosts_file([{"name": "web1", "fixed_ips": [{"ip": "fd00:1::11"}, {"ip": "10.1.0.11"}]},
                       {"name": "db1", "fixed_ips": [{"ip": "10.2.0.11"}]}])  # fmt: skip
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost" and "::1\tlocalhost" in lines[1]
    assert lines[2:] == ["10.2.0.11\tdb1", "10.1.0.11\tweb1", "fd00:1::11\tweb1"]


@pytest.fixture(scope="module")
def lab() -> SimLab:
    return SimLab(copy.deepcopy(EXAMPLE))


def router_macs(lab: SimLab) -> dict[str, str]:
    """Subnet name -> the router's MAC on it."""
    state = lab.ctl.nb.state()
    names = {s.id: s.name for s in state.all("subnet")}
    return {names[i.subnet]: str(i.mac) for r in state.all("router") for i in r.interfaces}


def test_simulated_workloads_reach_across_subnets_through_the_gateway(lab: SimLab) -> None:
    assert lab.ping("web1", "10.2.0.11") == 3
    assert lab.ping("web1", "fd00:2::11") == 3
    assert lab.ping("db1", "10.1.0.11") == 3 and lab.ping("db1", "fd00:1::11") == 3
    assert lab.ping("web1", "db1") == 3  # by name: its first address
    assert lab.resolve("db1") == "10.2.0.11"
    web1, macs = lab.hosts["web1"], router_macs(lab)
    # web1 resolved its gateways (the router's MACs), never db1 itself
    assert web1.neighbours[ip4_int("10.1.0.1")] == mac_int(macs["web-v4"])
    assert web1.neighbours[ip6_int("fd00:1::1")] == mac_int(macs["web-v6"])
    assert ip4_int("10.2.0.11") not in web1.neighbours
    assert ip6_int("fd00:2::11") not in web1.neighbours
    assert lab.ping("web1", "10.2.0.99") == 0  # routed, but nobody there
    # routed on hv1, tunnelled to hv2
    assert lab.underlay_rx.get("hv2", 0) > 0 and lab.underlay_rx.get("hv1", 0) > 0


def test_without_a_router_a_simulated_workload_has_no_way_off_its_subnet() -> None:
    doc: dict[str, Any] = copy.deepcopy(EXAMPLE)
    del doc["routers"]
    lab = SimLab(doc)
    assert lab.hosts["web1"].addrs and all(a.gateway is None for a in lab.hosts["web1"].addrs)
    assert lab.ping("web1", "10.2.0.11") == 0
    assert lab.ping("web1", "fd00:2::11") == 0
    assert not lab.hosts["web1"].neighbours  # nothing asked for: no route


def test_a_router_added_later_gives_the_simulated_workloads_their_routes() -> None:
    doc: dict[str, Any] = copy.deepcopy(EXAMPLE)
    routers = doc.pop("routers")
    lab = SimLab(doc)
    assert lab.ping("web1", "10.2.0.11", count=1) == 0
    lab.ctl.nb.create("router", routers[0])
    asyncio.run(lab.refresh())
    assert lab.ping("web1", "10.2.0.11") == 3
    assert lab.ping("web1", "fd00:2::11") == 3


def test_an_unknown_name_is_refused(lab: SimLab) -> None:
    with pytest.raises(ValueError, match="'nosuch': not an IPv4 or IPv6 address, nor a port"):
        lab.ping("web1", "nosuch")

"""What each chassis' BGP speaker advertises and its FRR configuration (vnet.bgp.config),
and the model's BGP fields refused naming the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from vnet.bgp.config import (
    TAG_BASE,
    Advert,
    advertisements,
    frr_conf,
    route_lines,
    structure,
    upstream_conf,
)
from vnet.bgp.speaker import load_state
from vnet.controller.northbound import Northbound
from vnet.model import ModelError
from vnet.model.objects import (
    BFDStatus,
    BGPPeer,
    BGPUplink,
    Chassis,
    ChassisBGP,
    FixedIP,
    FloatingIP,
    Gateway,
    Network,
    Port,
    PortForwarding,
    Router,
    RouterInterface,
    Subnet,
    Tenant,
)
from vnet.model.rules import State
from vnet.store import SqliteStore

UP4, UP6 = "203.0.113.1", "2001:db8:ffff:1::1"


def _bgp(i: int, v6: bool = True) -> ChassisBGP:
    addrs = [f"203.0.113.{200 + i}"] + ([f"2001:db8:ffff:1::{200 + i}"] if v6 else [])
    peers = [BGPPeer(ip=UP4, asn=65000)] + ([BGPPeer(ip=UP6, asn=65000)] if v6 else [])
    return ChassisBGP(asn=65100 + i, physnets={"phys": BGPUplink(addresses=addrs, peers=peers)})


def model(
    hv1_uplink: bool = False,
    advertise: tuple[str, ...] = ("floating_ips",),
    snat: bool = True,
    fip: str = "port",
    gw_chassis: tuple[str, ...] = ("hv2", "hv3"),
    v6_on_hv2: bool = True,
) -> State:
    objs: list[Any] = [Tenant(id="ops", name="ops"), Tenant(id="t1", name="t1")]
    for i, ch in enumerate(("hv1", "hv2", "hv3"), 1):
        phys = {"phys": "up-phys"} if ch != "hv1" or hv1_uplink else {}
        bgp = _bgp(i, v6=v6_on_hv2 or ch != "hv2") if phys else None
        objs.append(Chassis(id=ch, name=ch, underlay=f"192.0.2.{i}", physnets=phys, bgp=bgp))
    objs.append(Network(id="ext", name="ext", tenant="ops", external=True, physnet="phys"))
    objs.append(Subnet(id="se", name="se", network="ext", tenant="ops", cidr="203.0.113.0/24",
                       gateway=UP4))  # fmt: skip
    objs.append(Subnet(id="se6", name="se6", network="ext", tenant="ops",
                       cidr="2001:db8:ffff:1::/64", gateway=UP6))  # fmt: skip
    objs.append(Network(id="n1", name="n1", tenant="t1"))
    objs.append(Subnet(id="s1", name="s1", network="n1", tenant="t1", cidr="10.0.1.0/24",
                       gateway="10.0.1.1"))  # fmt: skip
    objs.append(Subnet(id="s6", name="s6", network="n1", tenant="t1", cidr="2001:db8:1::/64",
                       gateway="2001:db8:1::1"))  # fmt: skip
    objs.append(Port(id="a1", name="a1", network="n1", tenant="t1", chassis="hv1",
                     fixed_ips=[FixedIP(subnet="s1", ip="10.0.1.10")]))  # fmt: skip
    gw = Gateway(network="ext", ip="203.0.113.5", chassis=list(gw_chassis), snat=snat)
    objs.append(Router(id="r1", name="r1", tenant="t1", gateway=gw, advertise=list(advertise),
                       interfaces=[RouterInterface(subnet="s1"), RouterInterface(subnet="s6")]))  # fmt: skip
    if fip == "port":
        objs.append(FloatingIP(id="f", name="f1", tenant="t1", network="ext", ip="203.0.113.20",
                               port="a1"))  # fmt: skip
    elif fip == "forward":
        pf = PortForwarding(protocol="tcp", external_port=8080, port="a1", internal_port=80)
        objs.append(FloatingIP(id="f", name="f1", tenant="t1", network="ext", ip="203.0.113.20",
                               port_forwardings=[pf]))  # fmt: skip
    return State.of(objs)


def prefixes(state: State, ch: str) -> dict[str, int]:
    return {a.prefix: a.rank for a in advertisements(state, ch)}


def test_a_floating_ip_is_advertised_by_the_active_gateway_and_prepended_by_the_standby() -> None:
    s = model()
    assert prefixes(s, "hv2") == {"203.0.113.20/32": 0}
    assert prefixes(s, "hv3") == {"203.0.113.20/32": 1}
    assert prefixes(s, "hv1") == {}  # no BGP, no uplink: the port's chassis says nothing
    (a,) = advertisements(s, "hv2")
    assert a == Advert("203.0.113.20/32", "phys", 0, "floating_ip f1")


def test_a_distributed_floating_ip_is_advertised_by_its_ports_chassis_only() -> None:
    s = model(hv1_uplink=True)
    assert prefixes(s, "hv1") == {"203.0.113.20/32": 0}
    assert prefixes(s, "hv2") == {}
    assert prefixes(s, "hv3") == {}


def test_port_forwardings_are_the_gateways_even_with_the_port_on_an_uplinked_chassis() -> None:
    s = model(hv1_uplink=True, fip="forward")
    assert prefixes(s, "hv1") == {}
    assert prefixes(s, "hv2") == {"203.0.113.20/32": 0}


def test_subnets_on_request_only_the_untranslated_ones() -> None:
    assert prefixes(model(advertise=("subnets",), fip="none"), "hv2") == {"2001:db8:1::/64": 0}
    both = model(advertise=("floating_ips", "subnets"), snat=False)
    assert prefixes(both, "hv2") == {
        "10.0.1.0/24": 0,
        "2001:db8:1::/64": 0,
        "203.0.113.20/32": 0,
    }
    assert prefixes(both, "hv3") == {"10.0.1.0/24": 1, "2001:db8:1::/64": 1, "203.0.113.20/32": 1}
    # floating IPs not asked for: none
    assert prefixes(model(advertise=("subnets",)), "hv2") == {"2001:db8:1::/64": 0}
    assert prefixes(model(advertise=()), "hv2") == {}


def test_a_prefix_of_a_family_the_chassis_has_no_address_of_is_not_advertised() -> None:
    s = model(advertise=("floating_ips", "subnets"), v6_on_hv2=False)
    assert prefixes(s, "hv2") == {"203.0.113.20/32": 0}
    assert "2001:db8:1::/64" in prefixes(s, "hv3")


def test_nothing_of_a_router_that_is_down_or_has_no_gateway_chassis() -> None:
    for s in (model(advertise=("floating_ips", "subnets"), gw_chassis=()),
              model(advertise=("floating_ips", "subnets"), hv1_uplink=True, gw_chassis=())):  # fmt: skip
        assert [prefixes(s, c) for c in ("hv1", "hv2", "hv3")] == [{}, {}, {}]
    s = model(advertise=("floating_ips", "subnets"), hv1_uplink=True)
    r = s.get("router", "r1")
    down = State.of([*(o for k in s.objects.values() for o in k.values() if o.id != "r1"),
                     r.model_copy(update={"admin_up": False})])  # fmt: skip
    assert prefixes(s, "hv1") and prefixes(s, "hv2")
    assert [prefixes(down, c) for c in ("hv1", "hv2", "hv3")] == [{}, {}, {}]


def test_a_third_gateway_chassis_prepends_twice() -> None:
    s = model(gw_chassis=("hv3", "hv2", "hv1"), hv1_uplink=True, fip="forward")
    assert [prefixes(s, c) for c in ("hv3", "hv2", "hv1")] == [
        {"203.0.113.20/32": 0},
        {"203.0.113.20/32": 1},
        {"203.0.113.20/32": 2},
    ]


def test_frr_conf_routes_route_maps_sessions_and_bfd() -> None:
    s = model(advertise=("floating_ips", "subnets"))
    hv3 = s.get("chassis", "hv3")
    conf = frr_conf(hv3, advertisements(s, "hv3"))
    lines = conf.splitlines()
    t1 = TAG_BASE + 1  # physnet 0, rank 1
    assert f"ip route 203.0.113.20/32 blackhole tag {t1}" in lines
    assert f"ipv6 route 2001:db8:1::/64 blackhole tag {t1}" in lines
    assert "router bgp 65103" in lines
    assert " no bgp default ipv4-unicast" in lines
    assert f" neighbor {UP4} remote-as 65000" in lines
    assert f" neighbor {UP4} update-source 203.0.113.203" in lines
    assert f" neighbor {UP6} update-source 2001:db8:ffff:1::203" in lines
    assert f" neighbor {UP4} bfd profile vnet" in lines
    # each family's peer in its own address family, with both policies (ebgp-requires-policy)
    v4 = conf.split(" address-family ipv4 unicast")[1].split("exit-address-family")[0]
    v6 = conf.split(" address-family ipv6 unicast")[1].split("exit-address-family")[0]
    assert f"neighbor {UP4} route-map vnet-out-phys out" in v4 and UP6 not in v4
    assert f"neighbor {UP6} route-map vnet-out-phys out" in v6 and UP4 not in v6
    assert "redistribute static route-map vnet-adv" in v4 and "vnet-adv" in v6
    # rank 1's entry of the out route-map prepends the AS once, rank 0's not at all
    rm = conf.split("route-map vnet-out-phys permit 20\n")[1].split("exit")[0]
    assert f"match tag {t1}" in rm and "set as-path prepend 65103\n" in rm
    rm0 = conf.split("route-map vnet-out-phys permit 10\n")[1].split("exit")[0]
    assert "prepend" not in rm0
    assert "  detect-multiplier 3" in lines and "  transmit-interval 300" in lines


def test_only_the_routes_change_with_the_advertisements() -> None:
    a, b = model(), model(fip="none")
    ch = a.get("chassis", "hv2")
    assert frr_conf(ch, advertisements(a, "hv2")) != frr_conf(ch, advertisements(b, "hv2"))
    assert route_lines(ch, advertisements(b, "hv2")) == []
    assert frr_conf(ch, []) == structure(ch)


def test_no_bfd_when_turned_off() -> None:
    ch = Chassis(name="hv", physnets={"phys": "up"},
                 bgp=_bgp(1).model_copy(update={"bfd": False}))  # fmt: skip
    assert "bfd" not in structure(ch)


def test_upstream_conf_accepts_everything_and_announces_nothing() -> None:
    conf = upstream_conf("outside", 65000, UP4, [("203.0.113.201", 65101), ("2001:db8::5", 65101)])
    lines = conf.splitlines()
    assert "router bgp 65000" in lines
    assert " neighbor 203.0.113.201 remote-as 65101" in lines
    assert "  neighbor 203.0.113.201 route-map vnet-accept in" in lines
    assert "  neighbor 2001:db8::5 route-map vnet-announce-none out" in lines
    assert "route-map vnet-announce-none deny 10" in lines


def _b(addrs: list[str], peers: list[str], physnet: str = "phys", asn: int = 65001) -> Any:
    ps = [{"ip": p, "asn": 65000} for p in peers]
    return {"asn": asn, "physnets": {physnet: {"addresses": addrs, "peers": ps}}}


@pytest.mark.parametrize(
    ("bgp", "where"),
    [
        (_b(["1.2.3.4"], ["1.2.3.1"], asn=0), "asn"),
        ({"asn": 65001, "physnets": {}}, "physnets"),
        (_b(["1.2.3.4"], []), "peers"),
        (_b(["1.2.3.4", "1.2.3.5"], ["1.2.3.1"]), "one address per family"),
        (_b(["1.2.3.4"], ["2001:db8::1"]), "peers[0].ip"),
        (_b(["1.2.3.4"], ["1.2.3.4"]), "own address"),
        (_b(["1.2.3.4"], ["1.2.3.1"], physnet="other"), "bgp.physnets.other"),
        (_b(["nope"], ["1.2.3.1"]), "'nope' is not an IPv4 or IPv6 address"),
    ],
)
def test_bad_bgp_configuration_is_refused_naming_the_field(bgp: Any, where: str) -> None:
    with pytest.raises(ValidationError) as e:
        Chassis(name="hv", physnets={"phys": "up-phys"}, bgp=bgp)
    assert where in str(e.value)


def test_a_router_advertises_what_it_may() -> None:
    assert Router(name="r", tenant="t").advertise == ["floating_ips"]
    with pytest.raises(ValidationError) as e:
        Router(name="r", tenant="t", advertise=["everything"])
    assert "advertise" in str(e.value)


def test_a_speakers_address_is_never_a_floating_ips_or_a_ports() -> None:
    nb = Northbound(SqliteStore())
    up = {"addresses": ["203.0.113.2"], "peers": [{"ip": "203.0.113.1", "asn": 65000}]}
    nb.apply({
        "tenants": [{"name": "ops"}],
        "chassis": [{"name": "hv1", "physnets": {"phys": "up"},
                     "bgp": {"asn": 65001, "physnets": {"phys": up}}}],
        "networks": [{"name": "ext", "tenant": "ops", "external": True, "physnet": "phys"}],
        "subnets": [{"name": "ext4", "tenant": "ops", "network": "ext", "cidr": "203.0.113.0/24",
                     "gateway": "203.0.113.1"}],
    })  # fmt: skip
    before = nb.store.snapshot()
    with pytest.raises(ModelError) as e:
        nb.create("port", {"name": "p", "tenant": "ops", "network": "ext",
                           "fixed_ips": [{"ip": "203.0.113.2"}]})  # fmt: skip
    assert nb.store.snapshot() == before
    assert "chassis 'hv1''s BGP speaker" in e.value.message
    p = nb.create("port", {"name": "q", "tenant": "ops", "network": "ext"})
    assert isinstance(p, Port) and "203.0.113.2" not in p.ips  # allocated past it


def test_the_speakers_model_has_the_bfd_reports_that_fail_a_gateway_over() -> None:
    """What a speaker reads from the API (`speaker.load_state`) carries the chassis' BFD
    reports: hv2 seen down by hv1 and hv3, hv3 advertises the floating IP as the active."""
    objs = [o for kind in model().objects.values() for o in kind.values()]
    reports = [BFDStatus(id=r, name=r, sessions={"hv2": "down"}) for r in ("hv1", "hv3")]
    s = State.of([*objs, *reports])

    class Client:
        def list(self, kind: str) -> list[dict[str, Any]]:
            return [o.model_dump(mode="json") for o in s.all(kind)]

    got = load_state(Client())
    assert prefixes(got, "hv3") == {"203.0.113.20/32": 0}
    assert prefixes(got, "hv2") == {"203.0.113.20/32": 1}

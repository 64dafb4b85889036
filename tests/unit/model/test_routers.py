"""Routers and floating IPs: admission fills in what they need, refuses what cannot work,
and keeps the rest of the model from pulling anything from under them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from vnet.controller.northbound import Northbound
from vnet.model.l3 import eui64
from vnet.model.objects import MAX_PORT_KEY, FloatingIP, Port, Router
from vnet.model.state import derived_mac
from vnet.store import SqliteStore

from .helpers import refused

ROUTED: dict[str, Any] = yaml.safe_load((Path(__file__).parent / "routed.yaml").read_text())


@pytest.fixture
def nb() -> Northbound:
    n = Northbound(SqliteStore())
    n.apply(ROUTED)
    return n


def router(nb: Northbound, name: str = "r1") -> Router:
    r = nb.get("router", name, "shop")
    assert isinstance(r, Router)
    return r


def sid(nb: Northbound, name: str) -> str:
    return nb.get("subnet", name).id


def test_admission_fills_in_the_router_ports(nb: Northbound) -> None:
    r = router(nb)
    web4, web6, db4 = (sid(nb, s) for s in ("web-v4", "web-v6", "db-v4"))
    assert [i.subnet for i in r.interfaces] == [web4, web6, db4]
    # the router's logical ports: from the top of each network's keys down; web has two
    assert [i.tunnel_key for i in r.interfaces] == [MAX_PORT_KEY, MAX_PORT_KEY - 1, MAX_PORT_KEY]
    # a MAC per interface, derived from the router's and the subnet's ids
    assert [i.mac for i in r.interfaces] == [derived_mac(r.id, s, 0) for s in (web4, web6, db4)]
    assert r.tunnel_key == 1
    g = r.gateway
    assert g is not None and g.ip == "203.0.113.2"  # .1 is the upstream router (the gateway)
    assert g.mac == derived_mac(r.id, g.network, 0) and g.tunnel_key == MAX_PORT_KEY
    assert g.chassis == [nb.get("chassis", "hv1").id]
    fip = nb.get("floating_ip", "a-public", "shop")
    assert isinstance(fip, FloatingIP) and fip.ip == "203.0.113.3"  # never the gateway's
    assert fip.port == nb.get("port", "a", "shop").id
    r2 = nb.create("router", {"name": "r2", "tenant": "shop"})
    assert isinstance(r2, Router) and r2.tunnel_key == 2  # the smallest free


def test_what_was_allocated_stays(nb: Northbound) -> None:
    r = router(nb)
    assert nb.plan(ROUTED) == []  # the file leaves it all out: re-applying changes nothing
    # an update that names the interfaces by subnet only keeps their ports
    again = nb.update(
        "router", "r1", {"interfaces": [{"subnet": "db-v4"}, {"subnet": "web-v4"}]}, tenant="shop"
    )
    assert isinstance(again, Router)
    assert {i.subnet: (i.mac, i.tunnel_key) for i in again.interfaces} == {
        i.subnet: (i.mac, i.tunnel_key) for i in r.interfaces if i.subnet != sid(nb, "web-v6")
    }
    assert again.gateway == r.gateway and again.tunnel_key == r.tunnel_key


def test_ports_keep_off_what_routers_and_floating_ips_hold(nb: Northbound) -> None:
    r = router(nb)
    itf = r.interfaces[0]
    e = refused(nb, nb.create, "port",
                {"name": "x", "tenant": "shop", "network": "web", "tunnel_key": itf.tunnel_key})  # fmt: skip
    assert e.loc == ("tunnel_key",) and "router 'r1'" in e.message
    e = refused(nb, nb.create, "port",
                {"name": "x", "tenant": "shop", "network": "web", "mac": itf.mac})  # fmt: skip
    assert e.loc == ("mac",) and "router 'r1'" in e.message
    for ip, who in (("203.0.113.2", "router 'r1''s gateway"), ("203.0.113.3", "'a-public'")):
        e = refused(nb, nb.create, "port",
                    {"name": "x", "tenant": "provider", "network": "public",
                     "fixed_ips": [{"ip": ip}]})  # fmt: skip
        assert e.loc == ("fixed_ips", 0, "ip") and who in e.message, e
    p = nb.create("port", {"name": "x", "tenant": "provider", "network": "public"})
    assert isinstance(p, Port) and p.ips == ["203.0.113.4"]  # past the gateway and floating IP


def test_slaac_addresses_are_the_eui64_of_the_mac(nb: Northbound) -> None:
    assert eui64("fd00:1::/64", "52:54:00:12:34:56") == "fd00:1::5054:ff:fe12:3456"
    a = nb.get("port", "a", "shop")
    assert isinstance(a, Port) and a.ips == ["10.1.0.2", "fd00:1::5054:ff:fe12:3456"]
    p = nb.create("port", {"name": "x", "tenant": "shop", "network": "web"})
    assert isinstance(p, Port) and p.mac is not None
    assert p.ips[1] == eui64("fd00:1::/64", p.mac) != "fd00:1::3"
    e = refused(nb, nb.create, "port", {"name": "y", "tenant": "shop", "network": "web",
                                        "fixed_ips": [{"ip": "fd00:1::99"}]})  # fmt: skip
    assert e.loc == ("fixed_ips", 0, "ip") and "EUI-64" in e.message
    # a changed MAC takes its address along only when the request lets it
    e = refused(nb, nb.update, "port", "x", {"mac": "52:54:00:00:00:01"}, tenant="shop")
    assert e.loc == ("fixed_ips", 1, "ip") and "EUI-64" in e.message
    q = nb.update(
        "port", "x",
        {"mac": "52:54:00:00:00:01", "fixed_ips": [{"subnet": "web-v4"}, {"subnet": "web-v6"}]},
        tenant="shop",
    )  # fmt: skip
    assert isinstance(q, Port) and q.ips[1] == "fd00:1::5054:ff:fe00:1"
    # dhcpv6-stateless is SLAAC for the address too; a subnet turned SLAAC checks its ports
    nb.create("network", {"name": "v6", "tenant": "shop"})
    nb.create("subnet", {"name": "v6s", "tenant": "shop", "network": "v6", "cidr": "fd00:2::/64"})
    nb.create("port", {"name": "z", "tenant": "shop", "network": "v6"})
    e = refused(nb, nb.update, "subnet", "v6s", {"ipv6_mode": "dhcpv6-stateless"}, tenant="shop")
    assert e.loc == ("ipv6_mode",) and "'z'" in e.message and "EUI-64" in e.message


RouterCase = tuple[dict[str, Any], str, tuple[Any, ...], str]
ROUTER_REFUSALS: list[RouterCase] = [
    ({"routes": [{"cidr": "0.0.0.0/0", "nexthop": "10.9.0.1"}]}, "invalid",
     ("routes", 0, "nexthop"), "outside every subnet"),
    ({"routes": [{"cidr": "0.0.0.0/0", "nexthop": "10.1.0.129"}]}, "invalid",
     ("routes", 0, "nexthop"), "own address"),
    ({"routes": [{"cidr": "10.8.0.0/16", "nexthop": "10.1.0.140"}] * 2}, "invalid",
     ("routes", 1), "twice"),
    ({"interfaces": [{"subnet": "other-v4"}]}, "invalid",
     ("interfaces", 0, "subnet"), "tenant 'other'"),
    ({"interfaces": [{"subnet": "web-v4"}]}, "conflict",
     ("interfaces", 0, "subnet"), "on router 'r1'"),
    ({"interfaces": [{"subnet": "spare-v4"}, {"subnet": "spare-v4"}]}, "invalid",
     ("interfaces", 1, "subnet"), "twice"),
    ({"interfaces": [{"subnet": "uplink-v4"}]}, "invalid",
     ("interfaces", 0, "subnet"), "external network"),
    ({"interfaces": [{"subnet": "nope"}]}, "invalid", ("interfaces", 0, "subnet"), "no subnet"),
    ({"gateway": {"network": "spare"}}, "invalid", ("gateway", "network"), "not external"),
    ({"gateway": {"network": "public", "chassis": ["hv2"]}}, "invalid",
     ("gateway", "chassis", 0), "no uplink for physnet 'public'"),
    ({"gateway": {"network": "public", "ip": "203.0.113.3"}}, "conflict",
     ("gateway", "ip"), "floating IP 'a-public'"),
    ({"gateway": {"network": "public", "ip": "203.0.113.1"}}, "conflict",
     ("gateway", "ip"), "subnet 'public-v4''s gateway"),
    ({"gateway": {"network": "public", "ip": "198.51.100.7"}}, "invalid",
     ("gateway", "ip"), "outside every subnet"),
    ({"gateway": {"network": "public", "ip6": "fd00:9::5"}}, "invalid",
     ("gateway", "ip6"), "outside every IPv6 subnet"),
    ({"tunnel_key": 1}, "conflict", ("tunnel_key",), "router 'r1'"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "status", "loc", "words"), ROUTER_REFUSALS)
def test_router_refusals_name_the_field(
    nb: Northbound, fields: dict[str, Any], status: str, loc: tuple[Any, ...], words: str
) -> None:
    body = {"name": "r2", "tenant": "shop", "interfaces": [{"subnet": "spare-v4"}], **fields}
    e = refused(nb, nb.create, "router", body)
    assert (e.status, e.loc) == (status, loc) and words in e.message, e


def test_overlapping_interfaces_are_refused(nb: Northbound) -> None:
    e = refused(nb, nb.update, "router", "r1",
                {"interfaces": [{"subnet": "web-v4"}, {"subnet": "spare-v4"}]}, tenant="shop")  # fmt: skip
    assert e.loc == ("interfaces", 1, "subnet") and "overlaps subnet 'web-v4'" in e.message
    # the gateway's external subnets count too
    nb.create("network", {"name": "lan", "tenant": "shop"})
    nb.create("subnet", {"name": "lan-v4", "tenant": "shop", "network": "lan",
                         "cidr": "203.0.113.0/25"})  # fmt: skip
    e = refused(nb, nb.create, "router", {"name": "r2", "tenant": "shop",
                                          "interfaces": [{"subnet": "lan-v4"}],
                                          "gateway": {"network": "public"}})  # fmt: skip
    assert e.loc == ("gateway", "network") and "overlaps subnet 'lan-v4'" in e.message


FipCase = tuple[dict[str, Any], str, tuple[Any, ...], str]
FIP_REFUSALS: list[FipCase] = [
    ({"ip": "198.51.100.7"}, "invalid", ("ip",), "outside every IPv4 subnet"),
    ({"ip": "203.0.113.3"}, "conflict", ("ip",), "floating IP 'a-public'"),
    ({"ip": "203.0.113.2"}, "conflict", ("ip",), "router 'r1''s gateway"),
    ({"ip": "203.0.113.1"}, "conflict", ("ip",), "subnet 'public-v4''s gateway"),
    ({"ip": "2001:db8::5"}, "invalid", ("ip",), "IPv4"),
    ({"network": "web"}, "invalid", ("network",), "not external"),
    ({"port": "o"}, "invalid", ("port",), "tenant 'other'"),
    ({"port": "c"}, "invalid", ("port",), "no IPv4 address on a subnet of a router"),
    ({"port": "a"}, "conflict", ("port",), "floating IP 'a-public'"),
    ({"port_forwardings": [{"protocol": "tcp", "external_port": 80, "port": "c",
                            "internal_port": 8080}]},
     "invalid", ("port_forwardings", 0, "port"), "no IPv4 address on a subnet of a router"),
    ({"port_forwardings": [{"protocol": "tcp", "external_port": 80, "port": "b",
                            "internal_port": 80, "internal_ip": "10.2.0.9"}]},
     "invalid", ("port_forwardings", 0, "internal_ip"), "not an IPv4 address of port 'b'"),
    ({"port_forwardings": [{"protocol": "tcp", "external_port": 80, "port": "b",
                            "internal_port": 80}] * 2},
     "conflict", ("port_forwardings", 1, "external_port"), "tcp/80"),
]  # fmt: skip


@pytest.mark.parametrize(("fields", "status", "loc", "words"), FIP_REFUSALS)
def test_floating_ip_refusals_name_the_field(
    nb: Northbound, fields: dict[str, Any], status: str, loc: tuple[Any, ...], words: str
) -> None:
    body = {"name": "f2", "tenant": "shop", "network": "public", **fields}
    e = refused(nb, nb.create, "floating_ip", body)
    assert (e.status, e.loc) == (status, loc) and words in e.message, e


def test_a_floating_ip_forwards_ports_of_routed_ports(nb: Northbound) -> None:
    f = nb.create("floating_ip", {"name": "f2", "tenant": "shop", "network": "public",
                                  "port_forwardings": [{"protocol": "tcp", "external_port": 80,
                                                        "port": "b", "internal_port": 8080}]})  # fmt: skip
    assert isinstance(f, FloatingIP) and f.ip == "203.0.113.4" and f.port is None
    assert f.port_forwardings[0].port == nb.get("port", "b", "shop").id


@pytest.mark.parametrize(
    ("kind", "name", "words"),
    [
        ("subnet", "web-v4", "router 'r1' interfaces.0"),
        ("subnet", "public-v4", "router 'r1''s gateway"),
        ("network", "public", "floating IP 'a-public'"),
        ("network", "db", "router 'r1' interfaces.2"),
        ("port", "a", "floating IP 'a-public' (port 'a')"),
        ("chassis", "hv1", "router 'r1''s gateway chassis 0"),
        ("router", "r1", "floating IP 'a-public' (port 'a')"),
        ("tenant", "provider", "router 'r1''s gateway"),
    ],
)
def test_what_routers_and_floating_ips_use_is_not_deleted(
    nb: Northbound, kind: str, name: str, words: str
) -> None:
    for cascade in (False, True):
        if kind in ("network", "subnet", "tenant", "chassis") and not cascade:
            continue  # refused for their ports and networks before anything else
        e = refused(nb, nb.delete, kind, name, cascade=cascade)
        assert e.status == "conflict" and words in e.message, e
    if kind in ("port", "router"):
        e = refused(nb, nb.delete, kind, name)
        assert words in e.message


def test_deleting_in_order_works_and_a_tenant_takes_its_routers(nb: Northbound) -> None:
    e = refused(nb, nb.delete, "tenant", "shop")
    assert "still has floating IPs: a-public" in e.message
    nb.delete("floating_ip", "a-public")
    e = refused(nb, nb.delete, "tenant", "shop")
    assert "still has routers: r1" in e.message
    nb.delete("port", "a")
    nb.delete("router", "r1")
    nb.create("floating_ip", {"name": "f", "tenant": "shop", "network": "public"})
    nb.create("router", {"name": "r", "tenant": "shop", "interfaces": [{"subnet": "db-v4"}],
                         "gateway": {"network": "public"}})  # fmt: skip
    nb.create("floating_ip", {"name": "fa", "tenant": "shop", "network": "public", "port": "b"})
    nb.delete("tenant", "shop", cascade=True)
    assert nb.list("router") == [] and nb.list("floating_ip") == []
    nb.delete("tenant", "provider", cascade=True)


def test_changes_that_would_strand_a_router_or_floating_ip_are_refused(nb: Northbound) -> None:
    e = refused(nb, nb.update, "network", "public", {"external": False, "physnet": None},
                tenant="provider")  # fmt: skip
    assert e.loc == ("external",) and "router 'r1''s gateway" in e.message
    e = refused(nb, nb.update, "network", "public", {"physnet": "elsewhere"}, tenant="provider")
    assert e.loc == ("physnet",) and "hv1" in e.message
    e = refused(nb, nb.update, "chassis", "hv1", {"physnets": {}})
    assert e.loc == ("physnets",) and "physnet 'public'" in e.message
    e = refused(nb, nb.update, "port", "a", {"fixed_ips": [{"subnet": "web-v6"}]}, tenant="shop")
    assert e.loc == ("fixed_ips",) and "a-public" in e.message
    e = refused(nb, nb.update, "router", "r1", {"gateway": None}, tenant="shop")
    assert e.loc == ("gateway",) and "a-public" in e.message
    e = refused(nb, nb.update, "router", "r1", {"interfaces": [{"subnet": "db-v4"}]}, tenant="shop")
    assert e.loc == ("interfaces",) and "a-public" in e.message
    nb.create("router", {"name": "r2", "tenant": "shop", "interfaces": [{"subnet": "spare-v4"}]})
    e = refused(
        nb, nb.update, "network", "spare", {"external": True, "physnet": "x"}, tenant="shop"
    )
    assert e.loc == ("external",) and "router 'r2'" in e.message
    e = refused(nb, nb.update, "subnet", "db-v4", {"gateway": "10.2.0.254"}, tenant="shop")
    assert e.loc == ("gateway",) and "next hop" in e.message
    nb.create("network", {"name": "public2", "tenant": "provider", "external": True,
                          "physnet": "public", "vlan": 12})  # fmt: skip
    nb.create("subnet", {"name": "p2", "tenant": "provider", "network": "public2",
                         "cidr": "198.51.100.0/24"})  # fmt: skip
    e = refused(nb, nb.create, "subnet", {"name": "p1b", "tenant": "provider", "network": "public",
                                          "cidr": "10.2.0.0/16"})  # fmt: skip
    assert e.loc == ("cidr",) and "router 'r1'" in e.message


def test_a_gateway_has_an_ipv6_address_beside_its_ipv4_one(nb: Northbound) -> None:
    nb.create("subnet", {"name": "public-v6", "tenant": "provider", "network": "public",
                         "cidr": "fd00:e1::/64"})  # fmt: skip
    body = {"name": "r2", "tenant": "shop", "interfaces": [{"subnet": "spare-v4"}],
            "gateway": {"network": "public", "chassis": ["hv1"]}}  # fmt: skip
    r2 = nb.create("router", body)
    assert isinstance(r2, Router) and r2.gateway is not None
    assert r2.gateway.ip6 == "fd00:e1::2"  # the lowest free one (::1 is the subnet's gateway)
    again = nb.update("router", "r2", {"gateway": {"network": "public", "chassis": ["hv1"]}},
                      tenant="shop")  # fmt: skip
    assert isinstance(again, Router) and again.gateway and again.gateway.ip6 == "fd00:e1::2"
    nb.create("network", {"name": "n7", "tenant": "shop"})
    nb.create("subnet", {"name": "n7-v4", "tenant": "shop", "network": "n7", "cidr": "10.7.0.0/24"})
    body = {
        **body,
        "name": "r3",
        "interfaces": [{"subnet": "n7-v4"}],
        "gateway": {"network": "public", "ip6": "fd00:e1::2"},
    }
    e = refused(nb, nb.create, "router", body)
    assert (e.status, e.loc) == ("conflict", ("gateway", "ip6")) and "'r2'" in e.message


def test_two_external_networks_on_one_segment_are_refused(nb: Northbound) -> None:
    e = refused(nb, nb.create, "network",
                {"name": "twin", "tenant": "shop", "external": True, "physnet": "public"})  # fmt: skip
    assert (e.status, e.loc) == ("conflict", ("physnet",)) and "'public'" in e.message
    e = refused(nb, nb.create, "network", {"name": "twin", "tenant": "shop", "external": True,
                                           "physnet": "public", "vlan": 10})  # fmt: skip
    assert (e.status, e.loc) == ("conflict", ("vlan",)) and "'uplink'" in e.message
    ok = nb.create("network", {"name": "twin", "tenant": "shop", "external": True,
                               "physnet": "public", "vlan": 11})  # fmt: skip
    assert ok.name == "twin"

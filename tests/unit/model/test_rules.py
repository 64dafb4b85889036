"""Model rules through the northbound service on an in-memory store."""

from __future__ import annotations

from typing import Any

import pytest

from vnet.controller.northbound import Northbound
from vnet.model import Port
from vnet.store import SqliteStore

from .helpers import refused


@pytest.fixture
def nb() -> Northbound:
    n = Northbound(SqliteStore())
    n.create("chassis", {"name": "hv1"})
    for t in ("blue", "red"):
        n.create("tenant", {"name": t})
        n.create("network", {"name": "net", "tenant": t})
        n.create("subnet", {"name": "v4", "tenant": t, "network": "net", "cidr": "10.0.0.0/24"})
    return n


def test_allocation_is_deterministic_and_per_tenant(nb: Northbound) -> None:
    a = nb.create("port", {"name": "vm", "tenant": "blue", "network": "net"})
    b = nb.create("port", {"name": "vm", "tenant": "red", "network": "net"})
    assert isinstance(a, Port) and isinstance(b, Port)
    assert a.ips == b.ips == ["10.0.0.2"]  # the same address space in two tenants
    assert a.mac != b.mac and int(a.mac[:2], 16) & 2  # locally administered  # type: ignore[index]
    nets = nb.list("network")
    assert sorted(n.segment_id for n in nets) == [1, 2]  # type: ignore[attr-defined]
    c = nb.create("port", {"name": "vm2", "tenant": "blue", "network": "net"})
    assert c.ips == ["10.0.0.3"]  # type: ignore[attr-defined]


def test_dual_stack_port_gets_one_address_per_subnet(nb: Northbound) -> None:
    nb.create("subnet", {"name": "v6", "tenant": "blue", "network": "net", "cidr": "fd00:1::/64"})
    p = nb.create("port", {"name": "vm", "tenant": "blue", "network": "net"})
    assert p.ips == ["10.0.0.2", "fd00:1::2"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "body", "status", "loc", "words"),
    [
        (
            "port",
            {"fixed_ips": [{"ip": "10.9.0.5"}]},
            "invalid",
            ("fixed_ips", 0, "ip"),
            "outside every subnet",
        ),
        (
            "port",
            {"fixed_ips": [{"ip": "10.0.0.1"}]},
            "conflict",
            ("fixed_ips", 0, "ip"),
            "gateway",
        ),
        (
            "port",
            {"fixed_ips": [{"ip": "10.0.0.255"}]},
            "invalid",
            ("fixed_ips", 0, "ip"),
            "not a usable",
        ),
        (
            "port",
            {"fixed_ips": [{"ip": "10.0.0.300"}]},
            "invalid",
            ("fixed_ips", 0, "ip"),
            "not an IPv4 or IPv6",
        ),
        ("port", {"mac": "01:00:5e:00:00:01"}, "invalid", ("mac",), "multicast"),
        ("port", {"mac": "nonsense"}, "invalid", ("mac",), "not a MAC"),
        ("port", {"chassis": "hv9"}, "invalid", ("chassis",), "no chassis"),
        ("port", {"network": "nope"}, "invalid", ("network",), "no network"),
        ("port", {"colour": "red"}, "invalid", ("colour",), "unknown field"),
        ("port", {"name": "bad name!"}, "invalid", ("name",), "pattern"),
        ("subnet", {"cidr": "10.0.0.128/25"}, "conflict", ("cidr",), "overlaps"),
        ("subnet", {"cidr": "10.1.0.1/24"}, "invalid", ("cidr",), "host bits"),
        (
            "subnet",
            {"cidr": "10.1.0.0/24", "gateway": "10.2.0.1"},
            "invalid",
            ("gateway",),
            "not a usable",
        ),
        ("network", {"segment_id": 1}, "conflict", ("segment_id",), "in use"),
        ("network", {"segment_id": 1 << 24}, "invalid", ("segment_id",), "less than or equal"),
        ("network", {"name": "net"}, "conflict", ("name",), "exists"),
        ("network", {"mtu": 100}, "invalid", ("mtu",), "greater than"),
    ],
)
def test_bad_input_is_refused_whole(
    nb: Northbound, kind: str, body: dict[str, Any], status: str, loc: tuple[Any, ...], words: str
) -> None:
    base: dict[str, Any] = {"name": "x", "tenant": "blue"}
    if kind in ("port", "subnet"):
        base["network"] = "net"
    if kind == "subnet":
        base["cidr"] = "10.5.0.0/24"
    e = refused(nb, nb.create, kind, {**base, **body})
    assert (e.status, e.loc) == (status, loc) and words in e.message, e


def test_duplicates_in_a_network(nb: Northbound) -> None:
    a = nb.create("port", {"name": "a", "tenant": "blue", "network": "net"})
    e = refused(
        nb, nb.create, "port", {"name": "b", "tenant": "blue", "network": "net", "mac": a.mac}
    )  # type: ignore[attr-defined]
    assert e.status == "conflict" and e.loc == ("mac",)
    e = refused(
        nb, nb.create, "port",
        {"name": "b", "tenant": "blue", "network": "net", "fixed_ips": [{"ip": "10.0.0.2"}]},
    )  # fmt: skip
    assert e.status == "conflict" and "in use by port 'a'" in e.message
    # the same MAC in another tenant's network is fine
    nb.create("port", {"name": "b", "tenant": "red", "network": "net", "mac": a.mac})  # type: ignore[attr-defined]


def test_ambiguous_names_need_a_tenant(nb: Northbound) -> None:
    e = refused(nb, nb.create, "port", {"name": "p", "network": "net"})
    assert "ambiguous" in e.message and "blue" in e.message


def test_delete_refused_while_in_use_unless_cascading(nb: Northbound) -> None:
    nb.create("port", {"name": "p", "tenant": "blue", "network": "net", "chassis": "hv1"})
    e = refused(nb, nb.delete, "network", "net", tenant="blue")
    assert e.status == "conflict" and "still has ports: p" in e.message
    e = refused(nb, nb.delete, "chassis", "hv1")
    assert e.status == "conflict"
    nb.delete("network", "net", tenant="blue", cascade=True)
    assert [p.name for p in nb.list("port")] == []
    assert len(nb.list("subnet")) == 1  # red's
    e = refused(nb, nb.get, "network", "net", tenant="blue")
    assert e.status == "missing"


def test_stale_revision_is_a_conflict(nb: Northbound) -> None:
    p = nb.create("port", {"name": "p", "tenant": "blue", "network": "net"})
    p2 = nb.update("port", p.id, {"description": "web"}, revision=p.revision)
    assert p2.revision > p.revision and p2.mac == p.mac  # type: ignore[attr-defined]
    e = refused(nb, nb.update, "port", p.id, {"description": "db"}, revision=p.revision)
    assert e.status == "conflict" and e.loc == ("revision",)


def test_apply_is_declarative_and_idempotent() -> None:
    nb = Northbound(SqliteStore())
    doc: dict[str, Any] = {
        "tenants": [{"name": "t"}],
        "networks": [{"name": "n", "tenant": "t"}],
        "subnets": [{"name": "s", "tenant": "t", "network": "n", "cidr": "10.0.0.0/24"}],
        "ports": [{"name": f"p{i}", "tenant": "t", "network": "n"} for i in range(3)],
    }
    first = nb.apply(doc)
    assert [d.action for d in first] == ["create"] * 6
    rev = nb.store.revision()
    assert nb.apply(doc) == [] and nb.store.revision() == rev  # re-applying changes nothing
    doc["ports"] = doc["ports"][:2]
    doc["ports"][0]["description"] = "web"
    diffs = nb.plan(doc)
    assert sorted((d.action, (d.old or d.new).name) for d in diffs) == [  # type: ignore[union-attr]
        ("delete", "p2"),
        ("update", "p0"),
    ]
    assert diffs[-1].fields() == {"description": ("", "web")}
    nb.apply(doc)
    assert sorted(p.name for p in nb.list("port")) == ["p0", "p1"]


def test_apply_refuses_a_bad_file_whole() -> None:
    nb = Northbound(SqliteStore())
    doc = {
        "tenants": [{"name": "t"}],
        "networks": [{"name": "n", "tenant": "t"}],
        "ports": [{"name": "p", "tenant": "t", "network": "n", "fixed_ips": [{"ip": "10.0.0.5"}]}],
    }
    e = refused(nb, nb.apply, doc)
    assert e.loc == ("ports", 0, "fixed_ips", 0, "ip")
    assert nb.store.revision() == 0


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"switch": "bridge"}, ("switch",), "'vnet' or 'ovs'"),
        ({"switch": "ovs", "ovsdb": "db.sock"}, ("ovsdb",), "unix:/PATH"),
        ({"switch": "ovs", "bridge": "a-bridge-name-too-long"}, ("bridge",), "pattern"),
        ({"switch": "ovs", "datapath_type": "dpdk"}, ("datapath_type",), "'system' or 'netdev'"),
        ({"endpoint": "ptcp:6653"}, ("endpoint",), "tcp:HOST:PORT"),
    ],
)
def test_bad_chassis_is_refused(
    nb: Northbound, body: dict[str, Any], loc: tuple[Any, ...], words: str
) -> None:
    e = refused(nb, nb.create, "chassis", {"name": "hv2", **body})
    assert (e.status, e.loc) == ("invalid", loc) and words in e.message, e


def test_ovs_chassis_defaults(nb: Northbound) -> None:
    ch = nb.create("chassis", {"name": "hv2", "switch": "ovs", "ovsdb": "tcp:192.0.2.1:6640"})
    assert (ch.bridge, ch.datapath_type) == ("br-int", "netdev")  # type: ignore[attr-defined]
    assert ch.datapath_id is not None  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "loc", "words"),
    [
        ({"underlay": "fd00::1"}, ("underlay",), "IPv4 underlays only"),
        ({"underlay": "192.168.0.1"}, ("underlay",), "chassis 'hv1'"),
        ({"switch": "ovs", "encap": "nvgre"}, ("encap",), "no NVGRE"),
        ({"encap": "stt"}, ("encap",), "vxlan"),
        ({"underlay_mtu": 1400}, ("underlay_mtu",), "carries 1342 bytes; network 'net'"),
        ({"underlay_mtu": 1000}, ("underlay_mtu",), "greater than or equal to 1280"),
    ],
)
def test_chassis_underlay_refusals(
    nb: Northbound, body: dict[str, Any], loc: tuple[Any, ...], words: str
) -> None:
    nb.update("chassis", "hv1", {"underlay": "192.168.0.1"})
    e = refused(nb, nb.create, "chassis", {"name": "hv2", **body})
    assert e.loc == loc and words in e.message, e


def test_network_mtu_follows_the_narrowest_chassis(nb: Northbound) -> None:
    assert nb.get("network", "net", "blue").mtu == 1442  # Geneve over 1500, the defaults
    nb.create("chassis", {"name": "hv2", "encap": "vxlan", "underlay_mtu": 9000})
    assert nb.create("network", {"name": "n2", "tenant": "blue"}).mtu == 1442  # hv1 still
    e = refused(nb, nb.create, "network", {"name": "n3", "tenant": "blue", "mtu": 1443})
    assert e.loc == ("mtu",) and "chassis 'hv1' (geneve over an underlay MTU of 1500)" in e.message

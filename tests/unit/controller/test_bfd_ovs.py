"""Open vSwitch chassis in BFD: which sessions, the OVSDB rows wanted, what they report.

An Open vSwitch chassis the controller keeps over OVSDB runs its sessions as
OVN's ovn-controller has it do: a tunnel port per peer (key 0, `bfd:enable`),
whose Interface row's `bfd_status` the controller reads back into the same
`bfd.Reports` a vnet switch's BFD_STATUS goes to.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from vnet.controller.bfd import peers, wants
from vnet.controller.ovsdb import OWNER_KEY, OvsdbBridge, bfd_iface, bfd_ports, bfd_report
from vnet.controller.service import Controller
from vnet.model.l3 import active_gateway
from vnet.ofp.vnetext import BfdWant
from vnet.packet.addr import ip4_int
from vnet.store import SqliteStore

DB = "unix:/nonexistent/db.sock"  # never dialled here
MODEL: dict[str, Any] = {
    "tenants": [{"name": "t"}],
    "chassis": [
        {"name": "hv1", "id": "hv1", "underlay": "192.0.2.1"},
        {
            "name": "hv2",
            "id": "hv2",
            "underlay": "192.0.2.2",
            "switch": "ovs",
            "ovsdb": DB,
            "physnets": {"phys": "up0"},
        },
        {
            "name": "hv3",
            "id": "hv3",
            "underlay": "192.0.2.3",
            "switch": "ovs",
            "ovsdb": DB,
            "physnets": {"phys": "up0"},
        },
        {"name": "hv4", "id": "hv4", "underlay": "192.0.2.4", "switch": "ovs"},  # no OVSDB
        {"name": "hv5", "id": "hv5", "underlay": "192.0.2.5", "encap": "nvgre"},
        {"name": "hv6", "id": "hv6", "underlay": "192.0.2.6", "encap": "vxlan"},
    ],
    "networks": [
        {"name": "n", "tenant": "t"},
        {"name": "ext", "tenant": "t", "external": True, "physnet": "phys"},
    ],
    "subnets": [
        {"name": "s", "tenant": "t", "network": "n", "cidr": "10.0.0.0/24"},
        {"name": "se", "tenant": "t", "network": "ext", "cidr": "203.0.113.0/24"},
    ],
    "routers": [
        {
            "name": "r",
            "tenant": "t",
            "interfaces": [{"subnet": "s"}],
            "gateway": {"network": "ext", "chassis": ["hv2", "hv3"]},
        }
    ],
}


def _ctl() -> Controller:
    ctl = Controller(SqliteStore())
    ctl.nb.apply(MODEL)
    return ctl


def test_open_vswitch_chassis_kept_over_ovsdb_pair_with_every_chassis_but_nvgre() -> None:
    st = _ctl().nb.state()
    got = {c.id: sorted(peers(st, c.id)) for c in st.all("chassis")}
    assert got == {
        "hv1": ["hv2", "hv3"],  # a vnet chassis watches the Open vSwitch gateway chassis
        "hv2": ["hv1", "hv3", "hv6"],  # not hv4 (nobody configures it) nor hv5 (NVGRE)
        "hv3": ["hv1", "hv2", "hv6"],
        "hv4": [],
        "hv5": [],  # its gateways are Open vSwitch chassis: no NVGRE tunnel there
        "hv6": ["hv2", "hv3"],
    }
    for a, ps in got.items():  # the relation is symmetric
        assert all(a in got[b] for b in ps), (a, ps)
    assert wants(st, "hv2") == [
        BfdWant(ip4_int("192.0.2.1"), "geneve"),
        BfdWant(ip4_int("192.0.2.3"), "geneve"),
        BfdWant(ip4_int("192.0.2.6"), "vxlan"),  # the peer's encapsulation
    ]


def test_the_bfd_ports_wanted_are_ovn_s_per_peer_tunnel_ports_with_key_0() -> None:
    ws = wants(_ctl().nb.state(), "hv2")
    got = bfd_ports(ws)
    assert sorted(got) == ["vbfd-c0000201", "vbfd-c0000203", "vbfd-c0000206"]
    assert all(len(n) <= 15 for n in got)  # an interface name's limit
    owner, cols = got[bfd_iface(ip4_int("192.0.2.6"))]
    assert owner == "bfd:192.0.2.6"
    assert cols == {
        "type": "vxlan",
        "options": {"remote_ip": "192.0.2.6", "key": "0"},
        "bfd": {"enable": "true", "min_tx": "100", "min_rx": "100", "mult": "3",
                "check_tnl_key": "true"},
    }  # fmt: skip
    slow = bfd_ports([BfdWant(ip4_int("192.0.2.9"), "geneve", mult=5, min_tx=300, min_rx=400)])
    (_, cols), = slow.values()  # fmt: skip
    assert (cols["bfd"]["mult"], cols["bfd"]["min_tx"], cols["bfd"]["min_rx"]) == (
        "5",
        "300",
        "400",
    )


def test_bfd_status_reads_by_peer_address() -> None:
    got = bfd_report([
        ("bfd:192.0.2.1", {"state": "up", "forwarding": "true", "remote_state": "up"}),
        ("bfd:192.0.2.3", {"state": "init"}),
        ("bfd:192.0.2.6", {}),  # Open vSwitch has said nothing yet: left out
        ("bfd:192.0.2.7", {"state": "bogus"}),
        ("bfd:not-an-address", {"state": "up"}),
        ("tunnel:geneve", {"state": "up"}),  # not a BFD port of vnet's
    ])  # fmt: skip
    assert got == {
        ip4_int("192.0.2.1"): "up",
        ip4_int("192.0.2.3"): "init",
        ip4_int("192.0.2.7"): "down",
    }


def _tables(bridge: str, ifaces: list[tuple[str, str, dict[str, str]]]) -> dict[str, Any]:
    rows = [
        SimpleNamespace(name=n, external_ids={OWNER_KEY: o}, bfd_status=s) for n, o, s in ifaces
    ]
    ports = [SimpleNamespace(interfaces=[r]) for r in rows]
    br = SimpleNamespace(name=bridge, ports=ports)
    alien = SimpleNamespace(name="x", external_ids={OWNER_KEY: "bfd:192.0.2.8"},
                            bfd_status={"state": "up"})  # fmt: skip
    other = SimpleNamespace(name="br-phy", ports=[SimpleNamespace(interfaces=[alien])])
    return {"Bridge": SimpleNamespace(rows={1: br, 2: other})}


def test_a_change_of_the_bridge_s_bfd_ports_is_reported_whole_and_only_a_change() -> None:
    got: list[dict[int, str]] = []
    b = OvsdbBridge(DB, "br-int", on_bfd=got.append)
    one = ("vbfd-c0000201", "bfd:192.0.2.1")
    three = ("vbfd-c0000203", "bfd:192.0.2.3")
    b._changed(SimpleNamespace(tables=_tables("br-int", [(*one, {"state": "down"})])))
    b._changed(SimpleNamespace(tables=_tables("br-int", [(*one, {"state": "down"})])))
    b._changed(SimpleNamespace(tables=_tables("br-int", [
        (*one, {"state": "up"}), (*three, {"state": "init"}),
        ("vm1", "port-id", {}),
    ])))  # fmt: skip
    hv1, hv3 = ip4_int("192.0.2.1"), ip4_int("192.0.2.3")
    assert got == [{hv1: "down"}, {hv1: "up", hv3: "init"}]  # br-phy's is not ours


def test_an_open_vswitch_chassis_report_becomes_its_bfd_status_and_fails_over() -> None:
    async def main() -> None:
        ctl = _ctl()
        hv1, hv2, hv3 = (ip4_int(f"192.0.2.{i}") for i in (1, 2, 3))
        ctl.bfd.received("hv1", {hv2: "up", hv3: "up"}, True)  # the vnet chassis' report
        to_hv3 = ctl._ovs_bfd("hv3")  # as the keeper hands it to the bridge
        to_hv3({hv1: "up", hv2: "up"})
        await asyncio.sleep(0.05)  # the report crosses to the event loop
        st = ctl.nb.state()
        assert dict(st.get("bfd_status", "hv3").sessions) == {"hv1": "up", "hv2": "up"}
        assert active_gateway(st.get("router", st.all("router")[0].id), st) == "hv2"
        ctl.bfd.received("hv1", {hv2: "down"}, False)
        to_hv3({hv1: "up", hv2: "down"})
        await asyncio.sleep(0.05)
        st = ctl.nb.state()
        assert dict(st.get("bfd_status", "hv3").sessions) == {"hv1": "up", "hv2": "down"}
        assert active_gateway(st.all("router")[0], st) == "hv3"

    asyncio.run(main())


def test_no_flow_uses_a_bfd_port() -> None:
    """A BFD port is Open vSwitch's alone: with it among the switch's ports, the gateway
    chassis' flows are the same, none matching or sending to its number."""
    from vnet.compiler import Compiler, localize
    from vnet.pipeline.ofctl import format_flow

    st = _ctl().nb.state()
    hv2 = st.get("chassis", "hv2")
    base = {"vtep-geneve": 1, "vtep-vxlan": 2, "up0": 3}
    with_bfd = {**base, **{name: 40 + i for i, name in enumerate(bfd_ports(wants(st, "hv2")))}}
    lflows = Compiler().compile(st)
    flows = [format_flow(f) for f in localize(lflows, st, hv2, with_bfd)]
    assert flows and flows == [format_flow(f) for f in localize(lflows, st, hv2, base)]
    for n in (40, 41, 42):
        assert not [f for f in flows if f"in_port={n}," in f or f"output:{n}" in f], n

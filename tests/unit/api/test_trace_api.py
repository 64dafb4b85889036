"""`vnet trace` through the API: a packet's whole path across chassis.

The routed model (`model/routed.yaml`) on two chassis joined by Geneve: port a
(web, hv1) with a floating IP distributed on hv1 (it has the physnet), port b
(db, hv2) with none -- its traffic out is SNATed to the gateway's address on
the router's active gateway chassis hv1 -- and port d (db, hv2) with a
floating IP translated on hv1.  The upstream router 203.0.113.1 is a learned
neighbour.  Each trace is read back: the datapaths crossed on each chassis
with their stages and each flow's origin, the tunnels between chassis, the
5-tuple before and after each NAT, and where the packet ends.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from vnet.api import create_app
from vnet.cli.main import app
from vnet.client import Client
from vnet.controller.service import Controller
from vnet.store import SqliteStore
from vnet.testing.served import Served

from .helpers import refused

ROUTED = yaml.safe_load((Path(__file__).parents[1] / "model" / "routed.yaml").read_text())
UPSTREAM_MAC = "02:aa:bb:cc:dd:01"
runner = CliRunner()


def model() -> dict[str, Any]:
    doc = copy.deepcopy(ROUTED)
    doc["chassis"][0]["underlay"] = "192.0.2.1"
    doc["chassis"][1]["underlay"] = "192.0.2.2"
    doc["routers"][0]["routes"].append({"cidr": "0.0.0.0/0", "nexthop": "203.0.113.1"})
    doc["ports"].append({"name": "d", "tenant": "shop", "network": "db", "chassis": "hv2"})
    doc["floating_ips"].append({"name": "d-public", "tenant": "shop", "network": "public",
                                "port": "d"})  # fmt: skip
    return doc


def learn_upstream(ctl: Controller) -> None:
    st = ctl.nb.state()
    (r,) = st.all("router")
    public = next(n for n in st.all("network") if n.name == "public")
    ctl.nb.learn(r.id, public.id, "203.0.113.1", UPSTREAM_MAC, 1_000_000.0)


@pytest.fixture(scope="module")
def api() -> Iterator[Client]:
    ctl = Controller(SqliteStore())
    with TestClient(create_app(ctl)) as http:
        c = Client("http://testserver", http=http)
        c.apply(model())
        learn_upstream(ctl)
        yield c


def crossed(t: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["chassis"], p["datapath"]) for p in t["path"]]


def addr(api: Client, kind: str, name: str) -> str:
    o = api.get(kind, name, tenant="shop")
    return str(o["fixed_ips"][0]["ip"] if kind == "port" else o["ip"])


def test_east_west_crosses_switch_router_switch_then_tunnels_to_the_port(api: Client) -> None:
    b = addr(api, "port", "b")
    r = api.trace("a", f"icmp,nw_dst={b}", tenant="shop")
    t = r["trace"]
    assert crossed(t) == [("hv1", "switch web"), ("hv1", "router r1"), ("hv1", "switch db"),
                          ("hv2", "switch db")]  # fmt: skip
    web, r1, db1, db2 = t["path"]
    assert web["stages"][:2] == ["phy_in", "ls_in_port_sec"] and web["stages"][-1] == "phy_out"
    assert r1["kind"] == "router" and web["kind"] == "switch"
    for s in ("lr_in_admission", "lr_in_ip_routing", "lr_in_arp_resolve", "lr_out_delivery"):
        assert s in r1["stages"], r1["stages"]
    routing = next(s for s in r1["steps"] if s["stage"] == "lr_in_ip_routing")
    assert (
        routing["origin"].startswith("router r1 (") and "connected 10.2.0.0/24" in routing["origin"]
    )
    assert all(s["origin"] for p in t["path"] for s in p["steps"])  # every step says where from
    assert db1["stages"][-1] == "phy_out" and db2["stages"][0] == "phy_in"
    [tunnel] = t["hops"][0]["exits"]
    assert tunnel["kind"] == "tunnel" and tunnel["to_chassis"] == "hv2"
    assert t["hops"][1]["entered"] == "by the geneve tunnel from hv1 (192.0.2.1)"
    [end] = t["ends"]
    assert (end["chassis"], end["kind"]) == ("hv2", "port") and "port b" in end["text"]
    assert "nw_ttl=63" in end["flow"] and f"nw_dst={b}" in end["flow"]  # routed once
    assert t["nat"] == []
    text = r["text"]
    assert "=> geneve tunnel to hv2 (192.0.2.2)" in text and "=> delivered to port b" in text
    assert "\n  router r1\n" in text and 'bridge("hv2")' in text  # the path, then each pass


def test_north_south_is_redirected_to_the_gateway_chassis_and_snat_shown(api: Client) -> None:
    r = api.trace("b", "udp,nw_dst=198.51.100.7,tp_src=4000,tp_dst=53", tenant="shop")
    t = r["trace"]
    assert crossed(t) == [
        ("hv2", "switch db"), ("hv2", "router r1"), ("hv2", "switch db"),
        ("hv1", "switch db"), ("hv1", "router r1"), ("hv1", "switch public"),
    ]  # fmt: skip
    assert t["path"][1]["stages"][-2:] == ["lr_in_ip_routing", "lr_in_gw_redirect"]
    redirect = t["path"][2]["steps"][-1]
    assert redirect["stage"] == "phy_out" and "active gateway chassis hv1" in redirect["origin"]
    assert [x["to_chassis"] for x in t["hops"][0]["exits"]] == ["hv1"]
    assert "lr_out_snat" in t["path"][4]["stages"]
    [nat] = t["nat"]
    assert nat["kind"] == "snat" and (nat["chassis"], nat["datapath"]) == ("hv1", "router r1")
    assert nat["stage"] == "lr_out_snat" and nat["protocol"] == "udp"
    assert nat["before"] == {"src": "10.2.0.2:4000", "dst": "198.51.100.7:53"}
    assert nat["after"] == {"src": "203.0.113.2:4000", "dst": "198.51.100.7:53"}
    assert t["path"][4]["nat"] == [nat]  # in the crossing where it happened
    line = "nat: 10.2.0.2:4000 -> 198.51.100.7:53 becomes 203.0.113.2:4000 -> 198.51.100.7:53"
    assert line in r["text"] and nat["text"].startswith(line)
    [end] = t["ends"]
    assert (end["chassis"], end["kind"]) == ("hv1", "uplink") and "eth1" in end["text"]
    assert "nw_src=203.0.113.2" in end["flow"] and f"dl_dst={UPSTREAM_MAC}" in end["flow"]


def test_a_distributed_floating_ip_is_translated_on_the_ports_own_chassis(api: Client) -> None:
    fip = addr(api, "floating_ip", "a-public")
    r = api.trace("a", "tcp,nw_dst=198.51.100.7,tp_src=40000,tp_dst=443", tenant="shop")
    t = r["trace"]
    assert crossed(t) == [("hv1", "switch web"), ("hv1", "router r1"), ("hv1", "switch public")]
    [nat] = t["nat"]
    assert nat["after"]["src"] == f"{fip}:40000" and nat["before"]["src"] == "10.1.0.2:40000"
    assert f"becomes {fip}:40000 -> 198.51.100.7:443 (tcp; snat by router r1 on hv1" in r["text"]
    [end] = t["ends"]
    mac = api.get("floating_ip", "a-public", tenant="shop")["mac"]
    assert end["kind"] == "uplink" and f"dl_src={mac}" in end["flow"]


def test_from_outside_to_a_floating_ip_dnat_then_the_tunnel_to_its_port(api: Client) -> None:
    fip, d = addr(api, "floating_ip", "d-public"), addr(api, "port", "d")
    r = api.trace(None, f"udp,nw_src=198.51.100.7,nw_dst={fip},tp_src=53,tp_dst=4000",
                  from_outside="public")  # fmt: skip
    t = r["trace"]
    # no chassis given: the one that answers for the floating IP, the active gateway's
    assert t["from"] == {"chassis": "hv1", "outside": "public", "uplink": "eth1"}
    assert f"dl_src={UPSTREAM_MAC}" in t["flow"]  # the sender is a learned neighbour
    assert crossed(t) == [("hv1", "switch public"), ("hv1", "router r1"), ("hv1", "switch db"),
                          ("hv2", "switch db")]  # fmt: skip
    assert t["path"][0]["steps"][0]["origin"].endswith("localnet")
    [nat] = t["nat"]
    assert (nat["kind"], nat["stage"], nat["chassis"]) == ("dnat", "lr_in_dnat", "hv1")
    assert nat["before"] == {"src": "198.51.100.7:53", "dst": f"{fip}:4000"}
    assert nat["after"] == {"src": "198.51.100.7:53", "dst": f"{d}:4000"}
    assert f"nat: 198.51.100.7:53 -> {fip}:4000 becomes 198.51.100.7:53 -> {d}:4000" in r["text"]
    [end] = t["ends"]
    assert (end["chassis"], end["kind"]) == ("hv2", "port") and "port d" in end["text"]
    assert r["text"].startswith("Flow: ") and "hv1: from the physical network" in r["text"]


def test_from_outside_on_a_chosen_chassis(api: Client) -> None:
    fip = addr(api, "floating_ip", "a-public")
    t = api.trace(None, f"icmp,nw_src=198.51.100.7,nw_dst={fip}", from_outside="public",
                  chassis="hv1")["trace"]  # fmt: skip
    assert crossed(t) == [("hv1", "switch public"), ("hv1", "router r1"), ("hv1", "switch web")]
    [nat] = t["nat"]
    assert nat["protocol"] == "icmp" and nat["after"] == {"src": "198.51.100.7", "dst": "10.1.0.2"}
    assert [(e["chassis"], e["kind"]) for e in t["ends"]] == [("hv1", "port")]


def test_a_packet_that_goes_nowhere_ends_in_a_drop(api: Client) -> None:
    t = api.trace(None, "udp,nw_src=198.51.100.7,nw_dst=203.0.113.2,tp_dst=9",
                  from_outside="public")["trace"]  # fmt: skip
    [end] = t["ends"]
    assert end["kind"] == "drop" and end["chassis"] == "hv1"
    assert end["text"].startswith("dropped (no_output) at router r1 lr_in_ip_input: ")
    assert "other traffic to 203.0.113.2: drop" in end["text"]
    assert t["path"][-1]["datapath"] == "router r1"


@pytest.mark.parametrize(
    ("kw", "status", "loc"),
    [
        ({"from_outside": "public", "chassis": "hv2"}, 422, ["chassis"]),  # no uplink there
        ({"from_outside": "web"}, 422, ["from_outside"]),  # not external
        ({"from_outside": "nowhere"}, 404, ["from_outside"]),
        ({"from_outside": "public", "chassis": "hv9"}, 404, ["chassis"]),
    ],
)
def test_a_trace_from_outside_is_refused_naming_the_field(
    api: Client, kw: dict[str, str], status: int, loc: list[str]
) -> None:
    e = refused(api, status, api.trace, None, "udp,nw_dst=203.0.113.3", tenant="shop", **kw)
    assert e.loc == loc, e


def test_a_ports_trace_refuses_a_chassis(api: Client) -> None:
    e = refused(api, 422, api.trace, "a", "icmp,nw_dst=10.2.0.2", tenant="shop", chassis="hv2")
    assert e.loc == ["chassis"]
    e = refused(api, 422, api.trace, "a", "icmp,nw_dstt=10.2.0.2", tenant="shop")
    assert e.loc == ["packet"] and "nw_dstt" in e.message


def test_cli_trace_from_outside(tmp_path: Path) -> None:
    f = tmp_path / "routed.yaml"
    f.write_text(yaml.safe_dump(model()))
    ctl = Controller(SqliteStore())
    with Served(ctl) as s:
        assert runner.invoke(app, ["apply", "-f", str(f), "--api", s.url]).exit_code == 0
        learn_upstream(ctl)
        pkt = "udp,nw_src=198.51.100.7,nw_dst=203.0.113.3,tp_src=53,tp_dst=4000"
        r = runner.invoke(app, ["trace", "--from-outside", "public", "--chassis", "hv1", pkt,
                                "--api", s.url], env={"COLUMNS": "250"})  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "nat: 198.51.100.7:53 -> 203.0.113.3:4000 becomes 198.51.100.7:53 -> " \
               "10.1.0.2:4000" in r.output  # fmt: skip
        assert "=> delivered to port a" in r.output
        r = runner.invoke(app, ["trace", "b", "udp,nw_dst=198.51.100.7,tp_dst=53", "--tenant",
                                "shop", "-o", "json", "--api", s.url])  # fmt: skip
        assert r.exit_code == 0, r.output
        assert [p["chassis"] for p in json.loads(r.output)["path"]] == [
            "hv2", "hv2", "hv2", "hv1", "hv1", "hv1"]  # fmt: skip
        r = runner.invoke(app, ["trace", "a", pkt, "--from-outside", "public", "--api", s.url])
        assert r.exit_code == 2 and "only the packet" in r.output


def test_a_vlan_external_network_tagged_in_and_out() -> None:
    doc = model()
    next(n for n in doc["networks"] if n["name"] == "public")["vlan"] = 100
    ctl = Controller(SqliteStore())
    with TestClient(create_app(ctl)) as http:
        c = Client("http://testserver", http=http)
        c.apply(doc)
        learn_upstream(ctl)
        t = c.trace("b", "udp,nw_dst=198.51.100.7,tp_dst=53", tenant="shop")["trace"]
        [end] = t["ends"]
        assert end["kind"] == "uplink" and "(VLAN 100)" in end["text"]
        assert "dl_vlan=100" in end["flow"]
        fip = c.get("floating_ip", "d-public", tenant="shop")["ip"]
        r = c.trace(None, f"udp,nw_src=198.51.100.7,nw_dst={fip},tp_dst=53",
                    from_outside="public")  # fmt: skip
        t = r["trace"]
        assert "dl_vlan=100" in t["flow"] and "(physnet public, VLAN 100, in_port" in r["text"]
        assert [(e["chassis"], e["kind"]) for e in t["ends"]] == [("hv2", "port")]


def test_an_unknown_address_on_the_ports_own_subnet_is_not_sent_to_the_router(
    api: Client,
) -> None:
    t = api.trace("b", "icmp,nw_dst=10.2.0.77", tenant="shop")["trace"]
    assert "dl_dst=00:00:00:00:00:00" in t["flow"]  # no one answers for it: no MAC guessed
    assert all(p["datapath"] != "router r1" for p in t["path"])
    t = api.trace("b", "icmp,nw_dst=10.9.0.77", tenant="shop")["trace"]
    assert ("hv2", "router r1") in crossed(t)  # off the subnet: to the router's MAC

"""The packet a trace starts from: `vnet trace`, `vnet flows trace`, `vnet ofctl trace`.

A packet is refused on the same grounds as a flow's match (a field without its
protocol), errors point into the text the person typed, ICMP is an echo
request unless told otherwise, and a port's trace fills in the port's own
addresses for either family.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vnet.cli.main import app
from vnet.lab.sim import SimLab
from vnet.model.rules import ModelError
from vnet.packet import flowkey as fk
from vnet.packet.addr import ip4_int, ip6_int
from vnet.pipeline.ofctl import FlowSyntaxError, parse_flow, parse_packet

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_a_transport_port_without_its_protocol_is_refused_as_add_flow_refuses_it() -> None:
    with pytest.raises(FlowSyntaxError) as flow_err:
        parse_flow("tp_dst=80,actions=drop")
    with pytest.raises(FlowSyntaxError) as e:
        parse_packet("tp_dst=80")
    assert "requires" in e.value.message and e.value.token == "tp_dst=80"
    assert e.value.column == 1 and flow_err.value.message == e.value.message
    with pytest.raises(FlowSyntaxError) as e:
        parse_packet("ip,nw_dst=10.0.0.1,tp_dst=80")
    assert e.value.column == 20 and e.value.token == "tp_dst=80"
    assert parse_packet("tcp,tp_dst=80")[fk.TP_DST] == 80


def test_plain_icmp_is_an_echo_request() -> None:
    assert parse_packet("icmp,nw_dst=10.0.0.1")[fk.ICMP_TYPE] == 8
    assert parse_packet("icmp6,ipv6_dst=fd00::1")[fk.ICMP_TYPE] == 128
    assert parse_packet("icmp,icmp_type=0")[fk.ICMP_TYPE] == 0  # a reply when asked for
    assert parse_packet("icmp6,icmp_type=135,nd_target=fd00::1")[fk.ICMP_TYPE] == 135


def test_defaults_fill_only_what_the_text_leaves_out_and_the_protocol_has() -> None:
    d = {"in_port": "3", "nw_src": "10.0.0.5", "ipv6_src": "fd00::5"}
    v4 = parse_packet("icmp,nw_dst=10.0.0.1", d)
    assert v4[fk.IN_PORT] == 3 and v4[fk.IPV4_SRC] == ip4_int("10.0.0.5")
    assert not v4[fk.IPV6_SRC]
    v6 = parse_packet("icmp6,ipv6_dst=fd00::1", d)
    assert v6[fk.IPV6_SRC] == ip6_int("fd00::5") and not v6[fk.IPV4_SRC]
    assert parse_packet("ip,nw_src=10.9.9.9,in_port=1", d)[fk.IPV4_SRC] == ip4_int("10.9.9.9")
    assert parse_packet("ip,nw_src=10.9.9.9,in_port=1", d)[fk.IN_PORT] == 1
    arp = parse_packet("arp,arp_tpa=10.0.0.1", d)
    assert not arp[fk.IPV4_SRC] and arp[fk.IN_PORT] == 3


@pytest.fixture(scope="module")
def dual() -> SimLab:
    return SimLab(yaml.safe_load((ROOT / "examples/dual-stack.yaml").read_text()))


def test_port_trace_error_columns_point_into_what_was_typed(dual: SimLab) -> None:
    text = "icmp,nw_dstt=10.0.0.1"
    with pytest.raises(ModelError) as e:
        dual.ctl.trace("a", text)
    assert "column 6" in e.value.message and "nw_dstt" in e.value.message, e.value.message
    with pytest.raises(ModelError) as e:
        dual.ctl.trace("a", "tp_dst=80")
    assert "column 1" in e.value.message and "tp_dst: requires" in e.value.message, e.value.message


def test_port_trace_fills_the_ipv6_source_and_reaches_the_peer(dual: SimLab) -> None:
    b6 = next(a for a in dual.hosts["b"].port.ips if ":" in a)
    t = dual.ctl.trace("a", f"icmp6,ipv6_dst={b6}")
    assert [x.kind for x in t.ends] == ["port"], t.format()  # delivered, not dropped as spoofed
    assert "ipv6_src=fd00:10::" in t.format()


def test_port_trace_of_plain_icmp_is_a_request(dual: SimLab) -> None:
    b4 = next(a for a in dual.hosts["b"].port.ips if ":" not in a)
    text = dual.ctl.trace("a", f"icmp,nw_dst={b4}").format()
    assert "icmp_type=8" in text, text


def test_cli_flows_trace_refuses_a_port_without_protocol(tmp_path: Path) -> None:
    ff = tmp_path / "t.flows"
    ff.write_text("priority=1,actions=output:2\n")
    r = runner.invoke(app, ["flows", "trace", str(ff), "in_port=1,tp_dst=80"])
    assert r.exit_code == 2 and "column 11" in r.output and "tp_dst=80" in r.output, r.output


def test_port_trace_on_connected_switches_follows_the_tunnel_to_the_peer() -> None:
    """With every chassis' switch connected, their own port numbers: routed on the
    sender's chassis, tunnelled to the receiver's and delivered there."""
    lab = SimLab(yaml.safe_load((ROOT / "examples/east-west.yaml").read_text()))
    db1 = next(a for a in lab.hosts["db1"].port.ips if ":" in a)
    t = lab.ctl.trace("web1", f"icmp6,ipv6_dst={db1}")
    path = [(p["chassis"], p["datapath"]) for p in t.as_dict()["path"]]
    assert path == [("hv1", "switch web"), ("hv1", "router r1"), ("hv1", "switch db"),
                    ("hv2", "switch db")], t.format()  # fmt: skip
    [end] = t.ends
    assert (end.chassis, end.kind) == ("hv2", "port") and "port db1" in end.text
    sess = next(s for s in lab.ctl.sessions.values() if s.chassis == t.start.chassis.id)
    assert t.start.key[fk.IN_PORT] == sess.ofports[lab.hosts["web1"].port.iface]

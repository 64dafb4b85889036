from __future__ import annotations

import json
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap
from typer.testing import CliRunner

from vnet.cli.main import app

runner = CliRunner()
FLOWS = "table=0,priority=10,in_port=1,actions=resubmit(,1),output:2\ntable=1,tcp,tp_dst=80,actions=load:0x1->NXM_NX_REG0[]\n"


def test_decode_hex_and_pcap(tmp_path: Path) -> None:
    frame = bytes(
        Ether(src="02:00:00:00:00:01") / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=80)
    )
    r = runner.invoke(app, ["packet", "decode", frame.hex()])
    assert r.exit_code == 0, r.output
    layers = json.loads(r.output)["layers"]
    assert [x["layer"] for x in layers] == ["ethernet", "ipv4", "tcp"] and layers[2][
        "dst_port"
    ] == 80
    pcap = tmp_path / "c.pcap"
    wrpcap(str(pcap), [Ether(frame), Ether(frame)])
    r = runner.invoke(app, ["packet", "decode", "--pcap", str(pcap)])
    assert r.exit_code == 0 and len(json.loads(r.output)) == 2


def test_decode_bad_hex_exits_2() -> None:
    r = runner.invoke(app, ["packet", "decode", "00zz"])
    assert r.exit_code == 2 and "'z'" in r.output and "position 3" in r.output


def test_trace_text_and_json(tmp_path: Path) -> None:
    ff = tmp_path / "t.flows"
    ff.write_text(FLOWS)
    r = runner.invoke(app, ["flows", "trace", str(ff), "in_port=1,tcp,nw_dst=10.0.0.2,tp_dst=80"])
    assert r.exit_code == 0, r.output
    assert (
        "t.flows:1" in r.output
        and "reg0: 0x0 -> 0x1" in r.output
        and "Datapath actions: 2" in r.output
    )
    r = runner.invoke(app, ["flows", "trace", str(ff), "in_port=1,tcp,tp_dst=80", "--json"])
    out = json.loads(r.output)
    assert out["datapath_actions"] == "2" and out["tables"][0]["origin"] == "t.flows:1"
    frame = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=80))
    r = runner.invoke(app, ["flows", "trace", str(ff), "--hex", frame.hex(), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["outputs"][0]["frame"] == frame.hex()


def test_trace_errors_name_the_token(tmp_path: Path) -> None:
    ff = tmp_path / "bad.flows"
    ff.write_text("priority=1,actions=drop\npriority=2,tp_dst=80,actions=drop\n")
    r = runner.invoke(app, ["flows", "trace", str(ff), "in_port=1"])
    assert r.exit_code == 2 and "bad.flows:2:12" in r.output and "tp_dst=80" in r.output
    ff.write_text(FLOWS)
    r = runner.invoke(app, ["flows", "trace", str(ff), "in_port=1,nw_dts=1"])
    assert r.exit_code == 2 and "nw_dts" in r.output
    r = runner.invoke(app, ["flows", "trace", str(tmp_path / "missing.flows"), "in_port=1"])
    assert r.exit_code == 2 and "missing.flows" in r.output


def test_pipeline_demo_runs() -> None:
    r = runner.invoke(app, ["demo", "--pipeline"])
    assert r.exit_code == 0, r.output
    assert "Datapath actions:" in r.output and "output:4" in r.output


def test_simulated_demo_pings_and_isolates() -> None:
    r = runner.invoke(app, ["demo", "--sim"])
    assert r.exit_code == 0, r.output
    tenants, seg = r.output.split("-- micro-segmentation", 1)
    assert tenants.count("3/3 replies") == 2 and "0/3 replies" in tenants
    assert "UNEXPECTED" not in r.output and "ls_in_l2_lkup" in tenants
    # the firewall: one allowed, one denied, each with the rule that decided
    assert "client -> web ping: 3/3 replies" in seg and "client -> db ping: 0/3 replies" in seg
    assert "allow: ingress of web: allow by security group web rule 1" in seg
    assert "deny: ingress of db: deny by no ingress rule of its groups (db)" in seg

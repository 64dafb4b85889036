"""Reassembly on the control socket and in `vnet ct stats|ipf`, as dpctl/ipf-* shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP, fragment
from scapy.layers.l2 import Ether
from typer.testing import CliRunner

from vnet.cli import ct as ct_cli
from vnet.cli.main import app
from vnet.datapath import PortConfig, Switch
from vnet.datapath.control import ControlServer
from vnet.datapath.ports.memory import MemoryDevice
from vnet.datapath.runner import Runner
from vnet.datapath.switch import SwitchError
from vnet.pipeline.flow import FlowMod, FlowModCommand
from vnet.pipeline.ofctl import parse_flow


def server(tmp_path: Path) -> ControlServer:
    sw = Switch("sw", fail_mode="secure")
    for name in ("a", "b"):
        sw.add_port(PortConfig(name=name, kind="memory", port_security=False), MemoryDevice(name))
    sw.commit([FlowMod(FlowModCommand.ADD, parse_flow("ip,actions=ct(table=1)").flow)])
    return ControlServer(Runner(sw), str(tmp_path / "sw.ctl"))


def one_fragment(sw: Switch) -> None:
    dg = IP(src="10.0.0.1", dst="10.0.0.2", id=5) / UDP() / (b"x" * 3000)
    first = bytes(Ether() / fragment(dg, fragsize=1400)[0])
    a = sw.port_by_name("a")
    assert a is not None
    sw.receive(a, b"", first)


def test_ct_stats_carries_the_reassembly_counters(tmp_path: Path) -> None:
    ctl = server(tmp_path)
    one_fragment(ctl.runner.switch)
    r = ctl.ct_stats({})
    assert r["ipf"]["fragments"] == 1 and r["ipf"]["v4"]["accepted"] == 1
    assert r["connections"] == 0  # the tracker's own figures are still there


def test_ct_ipf_sets_what_it_is_given_and_reports(tmp_path: Path) -> None:
    ctl = server(tmp_path)
    one_fragment(ctl.runner.switch)
    r = ctl.ct_ipf({"enable": {"v6": False}, "min_frag": {"v4": 1000}, "max_frags": 10})
    assert r["enabled"] == {"v4": True, "v6": False}
    assert r["min_frag_size"] == {"v4": 1000, "v6": 1280} and r["max_frags"] == 10
    (line,) = r["dump"]
    assert "ip_id=5" in line and "state=first frag" in line


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"enable": {"v5": True}}, "enable: expected v4 or v6"),
        ({"enable": {"v4": 1}}, "enable.v4: expected true or false"),
        ({"enable": ["v4"]}, "enable: expected"),
        ({"min_frag": {"v4": 100}}, "min_frag.v4: expected 400..65535"),
        ({"min_frag": {"v6": True}}, "min_frag.v6"),
        ({"max_frags": 9999}, "max_frags: expected 0..5000"),
        ({"enable": {"v4": False}, "max_frags": -1}, "max_frags"),
    ],
)
def test_ct_ipf_refuses_bad_settings_naming_the_field_and_changes_nothing(
    tmp_path: Path, args: dict[str, Any], field: str
) -> None:
    ctl = server(tmp_path)
    before = ctl.runner.switch.ipf.stats()
    with pytest.raises(SwitchError, match=field.replace(".", r"\.")):
        ctl.ct_ipf(args)
    assert ctl.runner.switch.ipf.stats() == before


def test_the_cli_prints_and_sends_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctl = server(tmp_path)
    one_fragment(ctl.runner.switch)
    sent: list[dict[str, Any]] = []

    def fake(switch: str, cmd: str, **args: Any) -> Any:
        sent.append({"cmd": cmd, **args})
        return ctl.ct_ipf(args) if cmd == "ct-ipf" else ctl.ct_stats(args)

    monkeypatch.setattr(ct_cli, "_ctl", fake)
    runner = CliRunner()
    r = runner.invoke(app, ["ct", "stats", "sw"])
    assert r.exit_code == 0, r.output
    assert "reassembly: v4 on, v6 on; 1 fragments held in 1 lists (limit 1000)" in r.output
    assert "fragments (v4): accepted 1, completed 0, reassembled 0; drops: none" in r.output
    r = runner.invoke(
        app, ["ct", "ipf", "sw", "--disable", "v6", "--min-frag", "v4=800", "--lists"]
    )
    assert r.exit_code == 0, r.output
    assert sent[-1] == {"cmd": "ct-ipf", "enable": {"v6": False}, "min_frag": {"v4": 800}}
    assert "v4 on, v6 off" in r.output and "min fragment 800/1280 bytes" in r.output
    assert "state=first frag" in r.output
    r = runner.invoke(app, ["ct", "ipf", "sw", "--min-frag", "v4:800"])
    assert r.exit_code == 2 and "--min-frag" in r.output
    r = runner.invoke(app, ["ct", "ipf", "sw", "--enable", "v5"])
    assert r.exit_code == 2 and "--enable" in r.output

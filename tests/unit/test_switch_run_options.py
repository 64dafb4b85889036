"""`vnet switch run --datapath-id / --port-security`: refused when bad, shown when good.

A switch without ports (`--no-internal`) needs no root: it runs here as a real
process with its sockets in a private run directory, stopped by its PID.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vnet.cli.main import app
from vnet.testing.switchproc import portless_switch

VNET = [sys.executable, "-m", "vnet"]


@pytest.mark.parametrize(
    "value",
    [
        "abcdef",
        "00000000000000000",
        "0x",
        "0x1g",
        "000000000000000g",
        "0x0",
        "-1",
        "0x12345678901234567",
    ],
)
def test_a_bad_datapath_id_is_refused_naming_the_option(value: str, tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app,
        ["switch", "run", "--name", "x", "--no-internal", "--datapath-id", value],
        env={"VNET_RUNDIR": str(tmp_path)},
    )
    assert r.exit_code == 2, r.output
    assert "--datapath-id:" in r.output
    assert list(tmp_path.iterdir()) == []  # nothing made


def test_a_bad_port_security_is_refused_naming_the_option(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        app,
        ["switch", "run", "--name", "x", "--no-internal", "--port-security", "maybe"],
        env={"VNET_RUNDIR": str(tmp_path)},
    )
    assert r.exit_code == 2 and "--port-security: expected on or off" in r.output, r.output


def test_help_tells_both_options() -> None:
    r = CliRunner().invoke(app, ["switch", "run", "--help"], env={"COLUMNS": "200"})
    assert "--port-security" in r.output and "--datapath-id" in r.output
    assert "outside controller" in r.output and "16 hex digits" in r.output


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    name = "u" + uuid.uuid4().hex[:8]
    opts = ("--datapath-id", "00000000000000AB", "--port-security", "off")
    with portless_switch(tmp_path, name, *opts) as env:
        yield name, env


def vnet(env: dict[str, str], *args: str) -> str:
    p = subprocess.run([*VNET, *args], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_datapath_id_and_port_security_are_used_and_shown(
    running: tuple[str, dict[str, str]],
) -> None:
    name, env = running
    show = json.loads(vnet(env, "switch", "show", name, "--json"))
    assert show["dpid"] == "00000000000000ab"
    assert show["port_security"] == "off"
    assert show["openflow"]["connects"] == 0 and show["openflow"]["disconnects"] == 0
    text = vnet(env, "switch", "show", name)
    assert "dpid 00000000000000ab" in text and "port security off by default" in text
    assert "openflow: connects 0, disconnects 0" in text
    # FEATURES_REPLY carries it
    assert "dpid:00000000000000ab" in vnet(env, "ofctl", "show", name)

"""What a person meets first: the demo's preflight, finding the lab's API, names
instead of ids, exit codes, help text and output that pipes cleanly.

The lab tests here run a simulated lab (no root) under a run directory of
their own (VNET_RUNDIR), so the commands find it exactly as they find the
default lab, without --dir, --api or VNET_API.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
import yaml
from rich.console import Console
from typer.testing import CliRunner

from vnet.cli import lab_demo
from vnet.cli.main import app
from vnet.client import Client
from vnet.controller.service import Controller
from vnet.lab.sim import SimLab
from vnet.pipeline.ofctl import parse_flow
from vnet.store import SqliteStore
from vnet.testing.served import Served

ROOT = Path(__file__).resolve().parents[2]
VNET = [sys.executable, "-m", "vnet"]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
runner = CliRunner()


# -- the demo ----------------------------------------------------------------------------------
def _path_with(tmp_path: Path, *progs: str) -> str:
    """A PATH holding only `progs` (stand-ins: the preflight only looks them up)."""
    d = tmp_path / "-".join(("bin", *progs))
    d.mkdir()
    for p in progs:
        (d / p).write_text("#!/bin/sh\nexit 0\n")
        (d / p).chmod(0o755)
    return str(d)


def test_demo_preflight_names_what_is_missing_and_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path, "ip"))  # no ping
    msg = lab_demo.preflight("vnet")
    assert msg is not None and "ping" in msg, msg
    assert "apt-get install iputils-ping" in msg and "make demo" in msg, msg
    ovs = lab_demo.preflight("ovs")
    assert ovs is not None and "openvswitch-switch" in ovs and "ovs-vswitchd" in ovs
    monkeypatch.setenv("PATH", _path_with(tmp_path, "ip", "ping"))
    assert lab_demo.preflight("vnet") is None


def test_real_demo_without_ping_stops_before_anything_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _path_with(tmp_path, "ip"))
    monkeypatch.setattr(lab_demo, "_real_possible", lambda: True)
    started: list[object] = []
    monkeypatch.setattr(lab_demo.Lab, "up", lambda *a, **k: started.append(a))
    r = runner.invoke(app, ["demo"])
    assert r.exit_code == 1 and not started, r.output
    assert "ping" in r.output and "apt-get install iputils-ping" in r.output, r.output
    assert "0/3" not in r.output


def test_a_command_that_fails_to_start_shows_its_error_not_a_bare_count() -> None:
    con = Console(record=True, width=200)
    failed = subprocess.CompletedProcess(
        ["ip", "netns", "exec", "ns", "ping", "10.0.0.11"], 255, "",
        'exec of "ping" failed: No such file or directory\n',
    )  # fmt: skip
    # even where no reply is the expected outcome, a command that did not run is a failure
    assert not lab_demo._verdict(con, "isolated", 0, False, failed)
    assert 'exec of "ping" failed' in con.export_text()
    con = Console(record=True, width=200)
    lost = subprocess.CompletedProcess(["ping", "x"], 1, "3 packets transmitted, 0 received\n", "")
    assert not lab_demo._verdict(con, "same tenant", 0, True, lost)
    assert "0 received" in con.export_text()


def _fake_apt(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A PATH where `id -u` says root and apt-get records what it was asked."""
    d = tmp_path / "apt-bin"
    d.mkdir()
    log = tmp_path / "apt.log"
    (d / "id").write_text("#!/bin/sh\necho 0\n")
    (d / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    for f in ("id", "apt-get"):
        (d / f).chmod(0o755)
    return {**os.environ, "PATH": str(d)}, log


def test_make_demo_installs_what_the_demo_runs(tmp_path: Path) -> None:
    make = subprocess.run(["make", "-n", "demo"], cwd=ROOT, capture_output=True, text=True)
    assert "scripts/ensure-deps.sh demo vnet" in make.stdout, make.stdout + make.stderr
    make = subprocess.run(
        ["make", "-n", "demo", "SWITCH=ovs"], cwd=ROOT, capture_output=True, text=True
    )
    assert "ensure-deps.sh demo ovs" in make.stdout and "--switch ovs" in make.stdout
    bash = shutil.which("bash")
    assert bash is not None
    env, log = _fake_apt(tmp_path)  # neither ping nor ip nor Open vSwitch on this PATH
    r = subprocess.run([bash, "scripts/ensure-deps.sh", "demo", "vnet"], cwd=ROOT, env=env,
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    installed = log.read_text().split("\n")[-2]
    assert "iputils-ping" in installed and "iproute2" in installed
    assert "openvswitch" not in installed
    r = subprocess.run([bash, "scripts/ensure-deps.sh", "demo", "ovs"], cwd=ROOT, env=env,
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and "openvswitch-switch" in log.read_text().split("\n")[-2]


# -- a simulated lab, found without being named --------------------------------------------------
def _env(rundir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VNET_API", "VNET_TOKEN")}
    return {**env, "VNET_RUNDIR": str(rundir), **extra}


def vnet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VNET, *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def sim_lab(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[dict[str, str], Path]]:
    """A simulated lab of `request.param` in the default lab directory of a private rundir."""
    env = _env(tmp_path)
    r = vnet(env, "lab", "up", "--sim", str(request.param))
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        yield env, tmp_path / "lab"
    finally:
        vnet(env, "lab", "down")
        assert not (tmp_path / "lab" / "state.json").exists()


@pytest.mark.parametrize("sim_lab", EXAMPLES, ids=[p.name for p in EXAMPLES], indirect=True)
def test_applying_the_file_a_lab_was_started_from_changes_nothing(
    sim_lab: tuple[dict[str, str], Path], request: pytest.FixtureRequest
) -> None:
    env, _ = sim_lab
    file = request.node.callspec.params["sim_lab"]
    r = vnet(env, "apply", "-f", str(file), "--dry-run")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "0 object(s) would change" in r.stdout and "underlay" not in r.stdout, r.stdout
    r = vnet(env, "apply", "-f", str(file))
    assert r.returncode == 0 and "0 object(s) changed" in r.stdout, r.stderr + r.stdout


@pytest.mark.parametrize("sim_lab", [ROOT / "examples/two-tenants.yaml"], indirect=True)
def test_commands_find_the_lab_and_down_removes_it_also_from_inside_its_rundir(
    sim_lab: tuple[dict[str, str], Path],
) -> None:
    env, lab_dir = sim_lab
    r = vnet(env, "get", "ports")  # no VNET_API: the lab's state names its API
    assert r.returncode == 0 and "blue-web" in r.stdout, r.stderr
    # the setting a lab gives its own switches, exported by hand: still the same lab
    inside = _env(lab_dir)
    r = vnet(inside, "get", "ports")
    assert r.returncode == 0 and "red-db" in r.stdout, r.stderr
    r = vnet(inside, "lab", "down")
    assert r.returncode == 0 and "lab down: removed" in r.stdout, r.stdout + r.stderr
    assert not (lab_dir / "state.json").exists()


def test_lab_down_without_a_lab_says_there_is_none(tmp_path: Path) -> None:
    r = vnet(_env(tmp_path), "lab", "down")
    assert r.returncode == 0 and "no lab is up" in r.stdout, r.stdout + r.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_api_and_no_lab_says_how_to_point_vnet_at_one(tmp_path: Path) -> None:
    r = vnet(_env(tmp_path), "get", "ports", "--api", f"http://127.0.0.1:{_closed_port()}")
    assert r.returncode == 1 and "cannot reach the vnet API" in r.stderr, r.stderr
    assert "VNET_API=" in r.stderr and "vnet lab up" in r.stderr, r.stderr


def test_lab_logs_start_fresh(tmp_path: Path) -> None:
    env = _env(tmp_path)
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "sim.log").write_text("an earlier lab's log\n")
    r = vnet(env, "lab", "up", "--sim", str(ROOT / "examples/dual-stack.yaml"))
    try:
        assert r.returncode == 0, r.stderr
        assert "an earlier lab" not in (tmp_path / "lab" / "sim.log").read_text()
    finally:
        vnet(env, "lab", "down")


# -- names, exit codes ---------------------------------------------------------------------------
MODEL = """
tenants: [{name: blue}]
chassis: [{name: hv1}, {name: hv2}]
networks: [{name: net, tenant: blue}]
subnets: [{name: s4, tenant: blue, network: net, cidr: 10.0.0.0/24}]
ports:
  - {name: web, tenant: blue, network: net, chassis: hv1, fixed_ips: [{ip: 10.0.0.10}]}
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Served, Path]]:
    with Served(Controller(SqliteStore())) as s:
        f = tmp_path / "model.yaml"
        f.write_text(MODEL)
        r = runner.invoke(app, ["apply", "-f", str(f), "--api", s.url])
        assert r.exit_code == 0, r.output
        yield s, f


def test_diff_after_a_migration_names_the_chassis(api: tuple[Served, Path]) -> None:
    s, f = api
    with Client(s.url) as c:
        c.migrate("web", "hv2", "blue")
        ids = {ch["id"] for ch in c.list("chassis")}
    r = runner.invoke(app, ["apply", "-f", str(f), "--dry-run", "--api", s.url])
    assert r.exit_code == 0, r.output
    assert 'chassis: "hv2" -> "hv1"' in r.output, r.output
    assert not any(i in r.output for i in ids), r.output


def test_describe_port_names_its_subnet(api: tuple[Served, Path]) -> None:
    s, _ = api
    r = runner.invoke(app, ["describe", "port", "web", "--tenant", "blue", "--api", s.url])
    assert r.exit_code == 0, r.output
    fip = yaml.safe_load(r.output)["fixed_ips"][0]
    assert fip["subnet"].startswith("s4 ("), fip


def test_drift_exits_1_when_it_finds_drift() -> None:
    lab = SimLab(yaml.safe_load((ROOT / "examples/two-tenants.yaml").read_text()))
    with Served(lab.ctl) as s:
        r = runner.invoke(app, ["drift", "hv1", "--api", s.url])
        assert r.exit_code == 0 and "no drift" in r.output, r.output
        flow = parse_flow("table=3,priority=500,ip,nw_dst=10.0.0.99,actions=drop").flow
        lab.switches["hv1"].pipeline.add_flows([flow])
        r = runner.invoke(app, ["drift", "hv1", "--api", s.url])
        assert r.exit_code == 1 and "10.0.0.99" in r.output, r.output
        r = runner.invoke(app, ["drift", "--api", s.url, "-o", "json"])
        assert r.exit_code == 1 and json.loads(r.output)[0]["drift"], r.output
        r = runner.invoke(app, ["drift", "hv1", "--repair", "--api", s.url])
        assert r.exit_code == 0 and "repaired" in r.output, r.output
        r = runner.invoke(app, ["drift", "hv1", "--api", s.url])
        assert r.exit_code == 0 and "no drift" in r.output, r.output


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"vnet {version('vnet')}", r.output


# -- help and output -----------------------------------------------------------------------------
def test_help_shows_no_value_for_flags_and_defaults_in_words() -> None:
    env = {"COLUMNS": "200"}
    r = runner.invoke(app, ["lab", "up", "--help"], env=env)
    assert r.exit_code == 0 and "--sim" in r.output and "<bool>" not in r.output, r.output
    assert "<path>" in r.output  # options that take a value still say what
    r = runner.invoke(app, ["port", "migrate", "--help"], env=env)
    assert "A lab's directory (default: the lab that is up)." in r.output, r.output
    r = runner.invoke(app, ["get", "--help"], env=env)
    assert "(default: the lab's, if one is up" in r.output, r.output


def _commands(group: typer.Typer, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for c in group.registered_commands:
        yield (*path, c.name or (c.callback.__name__ if c.callback else ""))
    for g in group.registered_groups:
        assert g.typer_instance is not None and g.name
        yield (*path, g.name)
        yield from _commands(g.typer_instance, (*path, g.name))


def test_every_commands_help_renders() -> None:
    """Each command's --help prints (its text is rich markup: a stray [/...] breaks it)."""
    seen = list(_commands(app))
    assert ("agent", "run") in seen and ("controller", "run") in seen
    for cmd in seen:
        r = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0 and "Usage" in r.output, (cmd, r.output[-600:])


def test_piped_output_is_not_wrapped(api: tuple[Served, Path]) -> None:
    s, f = api
    long = "a-tenant-whose-name-is-long-enough-to-push-rows-past-80-cols"
    f.write_text(MODEL.replace("blue", long))
    r = runner.invoke(app, ["apply", "-f", str(f), "--api", s.url])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["get", "ports", "--api", s.url])
    row = next((line for line in r.output.splitlines() if "web" in line), r.output)
    assert long in row and "10.0.0.10" in row and "hv1" in row, r.output


def test_headings_are_whole_lines_off_a_terminal() -> None:
    from vnet.cli.common import heading

    con = Console(record=True, width=40, force_terminal=False)
    title = "vnet demo: two-tenants.yaml -- network namespaces, a vnet switch and the controller"
    heading(con, title)
    assert title in con.export_text()

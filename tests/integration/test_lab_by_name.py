"""A real lab used by name alone: no --dir, no --api, no VNET_API.

Each lab comes up in the default lab directory of a run directory of the
test's own (VNET_RUNDIR is the base, as /run/vnet is for root), so the
commands find it exactly as they find /run/vnet/lab.  Its switches are
reached by chassis name -- also the three-chassis lab's, each in its own
hypervisor namespace, and an Open vSwitch chassis' bridge -- and applying
the file the lab was started from changes nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]
ROOT = Path(__file__).resolve().parents[2]
VNET = [sys.executable, "-m", "vnet"]
CASES = [
    ("three-chassis.yaml", None),
    ("two-tenants.yaml", None),
    ("two-tenants.yaml", "ovs"),
    ("dual-stack.yaml", None),
    ("microseg.yaml", None),
]


def vnet(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VNET, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.fixture
def rundir(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("VNET_API", "VNET_TOKEN")}
    env["VNET_RUNDIR"] = str(tmp_path)
    try:
        yield env
    finally:
        vnet(env, "lab", "down")
        assert not (tmp_path / "lab" / "state.json").exists()


@pytest.mark.parametrize(("file", "switch"), CASES, ids=[f"{f}-{s or 'file'}" for f, s in CASES])
def test_lab_used_by_name(rundir: dict[str, str], file: str, switch: str | None) -> None:
    path = ROOT / "examples" / file
    doc = yaml.safe_load(path.read_text())
    r = vnet(rundir, "lab", "up", str(path), *(["--switch", switch] if switch else []))
    assert r.returncode == 0, r.stderr + r.stdout
    r = vnet(rundir, "get", "ports")
    assert r.returncode == 0, r.stderr
    assert all(p["name"] in r.stdout for p in doc["ports"]), r.stdout
    r = vnet(rundir, "apply", "-f", str(path), "--dry-run")
    assert r.returncode == 0 and "0 object(s) would change" in r.stdout, r.stdout + r.stderr
    for ch in doc["chassis"]:
        r = vnet(rundir, "ofctl", "dump-flows", ch["name"])
        assert r.returncode == 0 and "cookie=" in r.stdout, r.stderr
        r = vnet(rundir, "switch", "show", ch["name"])
        if switch == "ovs":  # Open vSwitch has no vnet control socket: said so, by name
            assert r.returncode == 1 and "Open vSwitch chassis" in r.stderr, r.stderr
        else:
            assert r.returncode == 0 and f"{ch['name']} dpid" in r.stdout, r.stderr
    r = vnet(rundir, "drift")
    assert r.returncode == 0 and "no drift" in r.stdout, r.stdout + r.stderr
    r = vnet(rundir, "lab", "down")
    assert r.returncode == 0 and "lab down: removed" in r.stdout, r.stdout + r.stderr
    r = vnet(rundir, "lab", "down")
    assert r.returncode == 0 and "no lab is up" in r.stdout, r.stdout


def test_down_finds_the_lab_with_its_own_directory_as_rundir(rundir: dict[str, str]) -> None:
    """VNET_RUNDIR set to the lab's directory (its switches' setting): the same lab."""
    r = vnet(rundir, "lab", "up", str(ROOT / "examples/two-tenants.yaml"))
    assert r.returncode == 0, r.stderr + r.stdout
    inside = {**rundir, "VNET_RUNDIR": str(Path(rundir["VNET_RUNDIR"]) / "lab")}
    r = vnet(inside, "ofctl", "dump-flows", "hv1")
    assert r.returncode == 0 and "cookie=" in r.stdout, r.stderr
    r = vnet(inside, "lab", "down")
    assert r.returncode == 0 and "lab down: removed" in r.stdout, r.stdout + r.stderr
    assert not (Path(rundir["VNET_RUNDIR"]) / "lab" / "state.json").exists()

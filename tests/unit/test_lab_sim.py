"""`vnet lab up --sim`: the lab as one process, no root -- from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vnet.client import Client

ROOT = Path(__file__).resolve().parents[2]
VNET = [sys.executable, "-m", "vnet"]


def vnet(d: Path, *args: str, api: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **({"VNET_API": api} if api else {})}
    return subprocess.run([*VNET, *args], capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    r = vnet(tmp_path, "lab", "up", "--sim", str(ROOT / "examples/two-tenants.yaml"),
             "--dir", str(tmp_path))  # fmt: skip
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        state = json.loads((tmp_path / "state.json").read_text())
        yield tmp_path, state["api"]
    finally:
        pid = json.loads((tmp_path / "state.json").read_text())["procs"][0]["pid"]
        assert vnet(tmp_path, "lab", "down", "--dir", str(tmp_path)).returncode == 0
        assert not (tmp_path / "state.json").exists()
        assert (
            not Path(f"/proc/{pid}/cmdline").exists()
            or not Path(f"/proc/{pid}/cmdline").read_bytes()
        )  # stopped (or a zombie of this test's process tree)


def ping(d: Path, port: str, addr: str) -> subprocess.CompletedProcess[str]:
    return vnet(d, "lab", "exec", port, "--dir", str(d), "--", "ping", "-c", "2", addr)


def test_pings_isolation_and_model_changes_through_the_api(lab: tuple[Path, str]) -> None:
    d, api = lab
    r = ping(d, "blue-web", "10.0.0.11")
    assert r.returncode == 0 and "2 received" in r.stdout, r.stdout + r.stderr
    r = ping(d, "blue-web", "10.0.0.99")
    assert r.returncode == 1 and "0 received" in r.stdout
    # a port added through the API gets a workload before the next ping
    with Client(api) as c:
        c.create("port", name="blue-new", tenant="blue", network="app", chassis="hv1",
                 fixed_ips=[{"ip": "10.0.0.20"}])  # fmt: skip
    assert ping(d, "blue-web", "10.0.0.20").returncode == 0
    assert ping(d, "red-web", "10.0.0.20").returncode == 1  # another tenant's address
    with Client(api) as c:
        c.delete("port", "blue-new", tenant="blue")
    assert ping(d, "blue-web", "10.0.0.20").returncode == 1
    r = vnet(d, "trace", "blue-web", "icmp,nw_dst=10.0.0.11", api=api)
    assert r.returncode == 0 and "port blue-db" in r.stdout, r.stderr


def test_what_a_simulated_lab_cannot_do_is_said(lab: tuple[Path, str]) -> None:
    d, _ = lab
    r = vnet(d, "lab", "exec", "blue-web", "--dir", str(d), "--", "ip", "addr")
    assert r.returncode == 2 and "only ping" in r.stderr
    r = vnet(d, "lab", "exec", "nobody", "--dir", str(d), "--", "ping", "10.0.0.11")
    assert r.returncode == 1 and "no port 'nobody'" in r.stderr
    r = vnet(d, "lab", "exec", "blue-web", "--dir", str(d), "--", "ping", "-x", "10.0.0.11")
    assert r.returncode == 2 and "-x" in r.stderr
    r = vnet(d, "lab", "exec", "blue-web", "--dir", str(d), "--", "ping", "not-an-address")
    assert r.returncode == 1 and "not an IPv4 or IPv6" in r.stderr
    assert vnet(d, "lab", "restart", "sim", "--dir", str(d)).returncode == 2

"""How a speaker applies its configuration to FRR (vnet.bgp.speaker.Speaker), with the
commands recorded instead of run: the whole file once, then only the routes that
changed, frr-reload.py when the sessions change, a refusal raised and retried."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from vnet.bgp import speaker as sp
from vnet.bgp.config import structure
from vnet.model.objects import Chassis

R1 = "ip route 198.51.100.50/32 blackhole tag 4200"
R2 = "ipv6 route 2001:db8:1::/64 blackhole tag 4201"


def chassis(asn: int = 65001) -> Chassis:
    up = {"addresses": ["198.51.100.11"], "peers": [{"ip": "198.51.100.1", "asn": 65000}]}
    return Chassis(name="hv1", physnets={"phys": "up-phys"},
                   bgp={"asn": asn, "physnets": {"phys": up}})  # fmt: skip


class Runner:
    """subprocess.run recorded: each command, answered with `stdout` and exit 0."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.stdout = ""

    def __call__(self, cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0, self.stdout, "")


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Runner:
    r = Runner()
    monkeypatch.setattr(sp.subprocess, "run", r)
    return r


def test_the_whole_file_first_then_only_the_routes_that_changed(
    tmp_path: Path, run: Runner
) -> None:
    s = sp.Speaker(tmp_path)
    ch = chassis()
    assert s.apply(ch, [R1])
    (first,) = run.calls
    assert first[-2:] == ["-f", str(tmp_path / "frr.conf")]
    text = (tmp_path / "frr.conf").read_text()
    assert text.startswith(R1 + "\n!\n") and text.endswith(structure(ch))
    assert not s.apply(ch, [R1])  # nothing changed: nothing run
    assert len(run.calls) == 1
    assert s.apply(ch, [R2])
    assert run.calls[1][-6:] == ["-c", "configure terminal", "-c", f"no {R1}", "-c", R2]


def test_new_sessions_go_through_frr_reload(tmp_path: Path, run: Runner) -> None:
    s = sp.Speaker(tmp_path)
    s.apply(chassis(), [R1])
    assert s.apply(chassis(asn=65009), [R1])
    cmd = run.calls[-1]
    assert str(sp.RELOAD) in cmd and "--reload" in cmd and cmd[-1] == str(tmp_path / "frr.conf")
    assert "router bgp 65009" in (tmp_path / "frr.conf").read_text()
    assert (tmp_path / "vtysh.conf").exists()


def test_a_refused_command_raises_and_is_tried_again(tmp_path: Path, run: Runner) -> None:
    s = sp.Speaker(tmp_path)
    s.apply(chassis(), [])
    run.stdout = "% Unknown command: ip route\n"
    with pytest.raises(sp.ApplyError, match="Unknown command"):
        s.apply(chassis(), [R1])
    run.stdout = ""
    assert s.apply(chassis(), [R1])  # not taken as applied: done on the next round
    assert run.calls[-1][-2:] == ["-c", R1]

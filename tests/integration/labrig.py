"""A lab built from a topology for a module of tests, and checked gone afterwards."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from vnet.lab.real import NETNS_ETC, Lab

VNET = [sys.executable, "-m", "vnet"]


@contextlib.contextmanager
def running_lab(
    doc: dict[str, Any], tmp: Path, switch: str | None, tx_off: bool = True
) -> Iterator[Lab]:
    """`vnet lab up` of `doc` with `switch` chassis (None: each as `doc` says), in `tmp`;
    `lab down` after, leaving no namespace, hosts file or state behind.  `tx_off`: the
    workloads' checksum offload off --
    Open vSwitch's userspace datapath gets no virtio-net header from a veth and would forward
    a partial checksum as it is (microseg_rig says more)."""
    f = tmp / "lab.yaml"
    f.write_text(yaml.safe_dump(doc))
    r = subprocess.run(
        [*VNET, "lab", "up", str(f), "--dir", str(tmp / "lab"),
         *(["--switch", switch] if switch else [])],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    lab = Lab(tmp / "lab")
    made = list(lab.state.get("netns", []))
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        for port in lab.state["ports"] if tx_off else []:
            r = lab.exec(port, ["ethtool", "-K", "eth0", "tx", "off"], timeout=30)
            assert r.returncode == 0, r.stderr
        yield lab
    finally:
        subprocess.run([*VNET, "lab", "down", "--dir", str(tmp / "lab")], timeout=120)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not [ns for ns in made if ns in left], left
        assert not [ns for ns in made if (NETNS_ETC / ns).exists()]  # the hosts files too
        assert not (tmp / "lab" / "state.json").exists()

"""examples/microseg.yaml up on real namespaces, for the micro-segmentation tests.

`microseg_lab(directory, switch)` runs `vnet lab up examples/microseg.yaml`
with the chassis' switch a vnet switch or Open vSwitch, turns transmit
checksum offload off in the workloads (Open vSwitch's userspace tracker
gets no virtio-net header from a veth and takes a partial checksum for a bad
one) and takes it all down again, the processes the test started in
`lab.servers` first, whatever happened.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vnet.lab.real import Lab

ROOT = Path(__file__).resolve().parents[2]
VNET = [sys.executable, "-m", "vnet"]
IP = {"client": "10.20.0.10", "web": "10.20.0.11", "db": "10.20.0.12"}


@contextmanager
def microseg_lab(directory: Path, switch: str) -> Iterator[Lab]:
    r = subprocess.run(
        [*VNET, "lab", "up", str(ROOT / "examples/microseg.yaml"), "--dir", str(directory),
         "--switch", switch],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lab = Lab(directory)
    servers: list[subprocess.Popen[str]] = []
    lab.servers = servers  # type: ignore[attr-defined]
    try:
        assert r.returncode == 0, r.stderr + r.stdout
        for port in IP:
            r = lab.exec(port, ["ethtool", "-K", "eth0", "tx", "off"], timeout=30)
            assert r.returncode == 0, r.stderr
        yield lab
    finally:
        for p in servers:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        subprocess.run([*VNET, "lab", "down", "--dir", str(directory)], timeout=60)


def vnet(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against the lab's controller."""
    env = {**os.environ, "VNET_API": lab.api, "VNET_RUNDIR": str(lab.dir)}
    if lab.token:
        env["VNET_TOKEN"] = lab.token
    return subprocess.run([*VNET, *args], capture_output=True, text=True, env=env, timeout=60)

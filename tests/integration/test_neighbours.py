"""A router's neighbours that are no model port, on real namespaces and switches.

examples/east-west.yaml (web1 on hv1, db1 on hv2, router r1 between them) plus db2
on hv2, a port of the db network without port security whose workload also
holds 10.2.0.77 and fd00:2::77 -- addresses no port of the model has.  web1
pings them: the router (on hv1, the sender's chassis) does not know their MAC,
so the controller asks into the db network (ARP request, neighbour
solicitation: out of hv1, through the tunnel to hv2), db2's kernel answers to
the router's MAC (on hv2), the controller learns the binding into the store,
and the later echoes are routed to db2.  The judges: ping's replies, and the
binding in `vnet get neighbours` with db2's MAC.  With vnet switches and with
Open vSwitch (netdev datapath), whose packet-out runs the injection
(`set_field` to `metadata` and `reg6`, a resubmit, no output).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from vnet.lab.real import Lab

from .labrig import running_lab

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]
ROOT = Path(__file__).resolve().parents[2]
EXTRA = {4: "10.2.0.77", 6: "fd00:2::77"}


def topology() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples/east-west.yaml").read_text())
    doc["ports"].append({"name": "db2", "tenant": "shop", "network": "db", "chassis": "hv2",
                         "port_security": False,
                         "fixed_ips": [{"subnet": "db-v4", "ip": "10.2.0.12"},
                                       {"subnet": "db-v6", "ip": "fd00:2::12"}]})  # fmt: skip
    return doc


@pytest.fixture(scope="module", params=["vnet", "ovs"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp(f"neigh-{request.param}")
    with running_lab(topology(), tmp, request.param) as lab:
        for cmd in (["ip", "addr", "add", f"{EXTRA[4]}/24", "dev", "eth0"],
                    ["ip", "-6", "addr", "add", f"{EXTRA[6]}/64", "dev", "eth0", "nodad"]):  # fmt: skip
            r = lab.exec("db2", cmd, timeout=30)
            assert r.returncode == 0, r.stderr
        yield lab


def _received(out: str) -> int:
    m = re.search(r"(\d+) (?:packets )?received", out)
    return int(m[1]) if m else 0


@pytest.mark.parametrize("v", [4, 6])
def test_an_address_no_port_holds_is_asked_for_learned_and_reached(lab: Lab, v: int) -> None:
    with lab.client() as c:
        db2 = next(p for p in c.list("port") if p["name"] == "db2")
    r = lab.exec("web1", ["ping", f"-{v}", "-c", "6", "-i", "0.3", "-W", "1", EXTRA[v]], timeout=30)
    got = _received(r.stdout)
    assert got >= 3, r.stdout + r.stderr  # the first echo is the one that asked
    deadline = time.monotonic() + 5
    while True:
        with lab.client() as c:
            found = [n for n in c.list("neighbours") if n["ip"] == EXTRA[v]]
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (n,) = found
    assert n["mac"] == db2["mac"]
    assert time.time() - n["seen_at"] < 60

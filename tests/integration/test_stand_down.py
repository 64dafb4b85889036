"""An isolated gateway chassis stands down, on real namespaces: cut from the controller
and from every BFD peer (its underlay cable down, its uplink up), hv2 stops answering for
the router's gateway and floating IP while hv3, which the others fail over to, answers
-- the outside sees one gateway, never two -- and answers again when its underlay is back.

`test_failover`'s chassis without BGP (the outside reaches the floating IP on the
physical network's segment, by ARP): hv1 holds the workload, hv2 and hv3 are the
router's gateway chassis, each with an uplink to the physical switch.  A chassis'
underlay cable and its uplink are separate veths (`lab.real`), so the underlay is cut
by taking `underlay0` down in hv2's namespace.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from vnet.lab.real import UNDERLAY_IFACE, Lab

from .labrig import running_lab
from .test_failover import FIP, _all_up, _bfd, _connected, cut_from_controller
from .test_failover import topology as failover_topology

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("ovs-vswitchd") is None, reason="needs openvswitch-switch"),
]
GWIP = "198.51.100.10"


def topology() -> dict[str, Any]:
    doc = failover_topology()
    doc["chassis"] = [{k: v for k, v in c.items() if k != "bgp"} for c in doc["chassis"]]
    doc["routers"][0]["gateway"]["ip"] = GWIP
    doc["routers"][0].pop("advertise", None)
    return doc


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with running_lab(topology(), tmp_path_factory.mktemp("standdown"), "vnet") as lab:
        yield lab


def _vnet(lab: Lab, *args: str) -> Any:
    env = {**os.environ, "VNET_API": lab.state["api"], "VNET_RUNDIR": str(lab.dir)}
    r = subprocess.run([sys.executable, "-m", "vnet", *args, "--json"], capture_output=True,
                       text=True, timeout=30, env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr + r.stdout
    return json.loads(r.stdout)


def _uplink_tx(lab: Lab, chassis: str) -> int:
    """Frames hv2's switch sent out of its uplink (to the physical switch)."""
    ports = _vnet(lab, "switch", "show", chassis)["ports"]
    (up,) = [p for p in ports if p["name"] in lab.state["uplinks"][chassis]]
    return int(up["stats"]["tx_packets"])


_ASK = """
import sys
from scapy.all import ARP, Ether, conf, get_if_hwaddr, srp
ip = sys.argv[1]
iface = conf.route.route(ip)[0]
me = get_if_hwaddr(iface)
ans, _ = srp(Ether(src=me, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=me, pdst=ip),
             iface=iface, timeout=1.5, multi=True, verbose=False)
print(len([r for _, r in ans if r[ARP].op == 2 and r[ARP].psrc == ip]))
"""


def _answers(lab: Lab, ip: str) -> int:
    """How many ARP replies for `ip` one broadcast request from the outside gets."""
    r = lab.exec("outside", [sys.executable, "-c", _ASK, ip], timeout=60)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.strip().splitlines()[-1])


def _underlay(lab: Lab, chassis: str, up: bool) -> None:
    ns = lab.state["chassis_netns"][chassis]
    state = "up" if up else "down"
    subprocess.run(["ip", "-n", ns, "link", "set", UNDERLAY_IFACE, state], check=True, timeout=10)


def _until(what: Callable[[], bool], timeout: float, msg: str) -> None:
    end = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < end, msg
        time.sleep(0.2)


def _isolated(lab: Lab, chassis: str) -> dict[str, Any]:
    r: dict[str, Any] = _vnet(lab, "bfd", "show", chassis)
    return r


def test_a_gateway_chassis_cut_from_everyone_stands_down(lab: Lab) -> None:
    _all_up(lab)
    ping = lab.exec("outside", ["ping", "-c", "3", "-W", "1", FIP], timeout=30)
    for _ in range(10):
        if ping.returncode == 0:
            break
        ping = lab.exec("outside", ["ping", "-c", "3", "-W", "1", FIP], timeout=30)
    assert ping.returncode == 0, ping.stdout
    assert _answers(lab, GWIP) == 1 and _answers(lab, FIP) == 1  # hv2, the active one
    shown = _isolated(lab, "hv2")
    assert shown["isolated"] is False and shown["stand_down"]["flows"] > 0
    assert _isolated(lab, "hv3")["stand_down"]["flows"] == 0
    with cut_from_controller(lab, "hv2"):
        _until(lambda: "hv2" not in _connected(lab), 5, "the controller still has hv2's switch")
        _underlay(lab, "hv2", up=False)
        try:

            def failed_over() -> bool:
                got = _bfd(lab)
                return got["hv1"].get("hv2") == "down" and got["hv3"].get("hv2") == "down"

            _until(failed_over, 5, f"hv2 never seen down: {_bfd(lab)}")
            _until(lambda: _isolated(lab, "hv2")["isolated"], 5, "hv2 never isolated")
            _until(lambda: _isolated(lab, "hv3")["stand_down"]["flows"] > 0, 5,
                   "hv3 never became the active gateway")  # fmt: skip
            shown = _isolated(lab, "hv2")
            sd = shown["stand_down"]
            assert sd["flows"] > 0 and sd["standing_down"] == sd["flows"], shown
            before = _uplink_tx(lab, "hv2")
            # one gateway answers: hv3; hv2 (its flows still installed) does not
            assert _answers(lab, GWIP) == 1 and _answers(lab, FIP) == 1
            assert _uplink_tx(lab, "hv2") == before
            r = lab.exec("outside", ["ping", "-c", "20", "-i", "0.05", "-W", "1", FIP], timeout=30)
            assert r.returncode == 0 and " 0% packet loss" in r.stdout, r.stdout
        finally:
            _underlay(lab, "hv2", up=True)
        _until(lambda: not _isolated(lab, "hv2")["isolated"], 10, "hv2 still isolated")
        assert _isolated(lab, "hv2")["stand_down"]["standing_down"] == 0
    _until(lambda: "hv2" in _connected(lab), 20, "hv2's switch never connected again")
    _all_up(lab)
    assert _answers(lab, GWIP) == 1
    r = lab.exec("outside", ["ping", "-c", "5", "-W", "1", FIP], timeout=30)
    assert r.returncode == 0, r.stdout

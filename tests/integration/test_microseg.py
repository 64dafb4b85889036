"""Micro-segmentation accepted on real namespaces: examples/microseg.yaml, vnet and Open vSwitch.

`vnet lab up examples/microseg.yaml` (one tenant: client, web and db with
`tier` labels) with the chassis' switch a vnet switch or Open vSwitch
(netdev datapath, programmed by the same controller), and real TCP servers
in the namespaces (transmit checksum offload off in them, as Open vSwitch's
userspace tracker needs).  The one test body asks both switches the same things:

- client -> web tcp/80 and web -> db tcp/5432 connect and carry a reply;
  the reverse directions (web -> client, db -> web) time out;
- client -> db tcp/5432 is refused at once (policy protect-db rejects it)
  and the connection log names the rule;
- ICMP echo only where a rule allows it (client -> web); ARP always;
- an ICMP error about an allowed connection reaches client (related),
  one about no connection does not;
- a logged deny added through the API drops silently and logs (the log
  meter installed with its flows);
- relabelling client through the API changes its verdicts within 1 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vnet.lab.real import Lab

from .microseg_rig import IP, microseg_lab, vnet

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

# a server answering every connection with one line, until killed
SERVE = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16); print("up", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"hello from " + sys.argv[1].encode() + b"\\n"); c.close()
"""
# connect, read the greeting: "ok", or the error's name and how long it took
CONNECT = """
import socket, sys, time
t = time.monotonic()
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    got = c.recv(100); c.close()
    print("ok" if got.startswith(b"hello") else "empty", round(time.monotonic() - t, 3))
except OSError as e:
    print(type(e).__name__, round(time.monotonic() - t, 3))
"""
# web's side of an open connection from client sends client an ICMP error quoting
# one of its segments (related), then one quoting a tuple no connection has
ICMP_ERRORS = """
import sys
from scapy.layers.inet import ICMP, IP, TCP
from scapy.sendrecv import send
web, client, sport = sys.argv[1], sys.argv[2], int(sys.argv[3])
for port in (sport, int(sys.argv[4])):
    quote = IP(src=client, dst=web) / TCP(sport=port, dport=80, flags="A", seq=1)
    send(IP(src=web, dst=client) / ICMP(type=3, code=4, nexthopmtu=1300) / bytes(quote)[:28],
         verbose=False)
"""
HOLD = """
import socket, sys, time
c = socket.create_connection((sys.argv[1], 80), timeout=3)
print(c.getsockname()[1], flush=True); time.sleep(float(sys.argv[2]))
"""


@pytest.fixture(params=["vnet", "ovs"])
def lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    with microseg_lab(tmp_path, request.param) as lab:
        yield lab


def serve(lab: Lab, port: str, tcp_port: int) -> None:
    p = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns(port), sys.executable, "-c", SERVE, IP[port],
         str(tcp_port)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lab.servers.append(p)  # type: ignore[attr-defined]
    assert p.stdout is not None and p.stdout.readline().strip() == "up"


def connect(lab: Lab, src: str, dst: str, port: int, timeout: float = 2.0) -> tuple[str, float]:
    r = lab.exec(src, [sys.executable, "-c", CONNECT, IP[dst], str(port), str(timeout)], 30)
    what, took = r.stdout.split()
    return what, float(took)


def ping(lab: Lab, src: str, dst: str) -> bool:
    r = lab.exec(src, ["ping", "-c", "2", "-i", "0.2", "-W", "1", IP[dst]], timeout=30)
    return r.returncode == 0


def dest_unreachs(lab: Lab, port: str) -> int:
    """ICMP destination unreachable messages the workload's stack has received."""
    lines = [ln.split() for ln in lab.exec(port, ["cat", "/proc/net/snmp"]).stdout.splitlines()]
    head, values = [ln for ln in lines if ln[0] == "Icmp:"][:2]
    return int(values[head.index("InDestUnreachs")])


def test_the_example_on_namespaces(lab: Lab) -> None:
    serve(lab, "web", 80)
    serve(lab, "db", 5432)
    serve(lab, "client", 80)
    serve(lab, "web", 23)
    # allowed, with the reply
    assert connect(lab, "client", "web", 80)[0] == "ok"
    assert connect(lab, "web", "db", 5432)[0] == "ok"
    # the reverse directions: dropped, so the attempt times out
    assert connect(lab, "web", "client", 80, 1.0)[0] == "TimeoutError"
    assert connect(lab, "db", "web", 80, 1.0)[0] == "TimeoutError"
    # rejected: refused at once, though db listens
    what, took = connect(lab, "client", "db", 5432)
    assert what == "ConnectionRefusedError" and took < 1.0, (what, took)
    # ICMP echo only where a rule allows it; ARP whatever the rules
    assert ping(lab, "client", "web")
    assert not ping(lab, "client", "db")
    assert not ping(lab, "web", "db")
    assert not ping(lab, "web", "client")
    neigh = lab.exec("web", ["ip", "neigh", "show", IP["client"]]).stdout
    with lab.client() as c:
        assert c.get("port", "client")["mac"] in neigh, neigh

    # an ICMP error about an allowed connection passes (related); about none, not
    hold = subprocess.Popen(
        ["ip", "netns", "exec", lab.netns("client"), sys.executable, "-c", HOLD, IP["web"], "5"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    lab.servers.append(hold)  # type: ignore[attr-defined]
    assert hold.stdout is not None
    sport = int(hold.stdout.readline())
    before = dest_unreachs(lab, "client")
    r = lab.exec("web", [sys.executable, "-c", ICMP_ERRORS, IP["web"], IP["client"], str(sport),
                         str(sport ^ 1)], timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    time.sleep(0.3)
    assert dest_unreachs(lab, "client") - before == 1

    # the connection log: the rejected attempt with its rule
    r = vnet(lab, "flows", "log", "--port", "db", "--verdict", "reject")
    assert r.returncode == 0, r.stderr
    assert "client" in r.stdout and "5432" in r.stdout and "policy protect-db rule 0" in r.stdout

    # a logged deny through the API: silent drop, logged (the log meter is installed)
    with lab.client() as c:
        c.create("policy", name="no-telnet", tenant="shop", priority=50, applied_to={"tier": "web"},
                 rules=[{"action": "deny", "direction": "ingress", "protocol": "tcp",
                         "ports": "23", "log": True}])  # fmt: skip
    time.sleep(1.0)
    assert connect(lab, "client", "web", 23, 1.0)[0] == "TimeoutError"
    r = vnet(lab, "flows", "log", "--port", "web", "--verdict", "deny")
    assert r.returncode == 0 and "policy no-telnet rule 0" in r.stdout, r.stdout + r.stderr
    assert connect(lab, "client", "web", 80)[0] == "ok"  # the rest as it was

    # relabelling: client becomes a web tier port; db lets it in within a second
    with lab.client() as c:
        t0 = time.monotonic()
        c.update("port", "client", {"labels": {"tier": "web"}})
    deadline = t0 + 5
    what = ""
    while time.monotonic() < deadline:
        what, _ = connect(lab, "client", "db", 5432, 0.3)
        if what == "ok":
            break
    took = time.monotonic() - t0
    print(f"relabel: {took:.3f} s")
    assert what == "ok" and took <= 1.0, (what, took)
    # and it lost what clients had: web no longer takes its pings
    assert not ping(lab, "client", "web")

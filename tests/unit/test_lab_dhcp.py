"""The lab's DHCP client script, run by sh with a recording `ip`: addresses, routes, MTU, DNS."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from vnet.lab.addressing import mode, udhcpc_script


def run(tmp_path: Path, event: str, **env: str) -> tuple[list[str], str, str]:
    """The `ip` commands the script ran, its output, and the resolv.conf it wrote."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / "ip.log"
    (bindir / "ip").write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    (bindir / "ip").chmod(0o755)
    resolv = tmp_path / "resolv.conf"
    script = tmp_path / "script"
    script.write_text(udhcpc_script(str(resolv)))
    script.chmod(0o755)
    full = {"PATH": f"{bindir}:{os.environ['PATH']}", "interface": "eth0", **env}
    out = subprocess.run([str(script), event], env=full, capture_output=True, text=True, check=True)
    cmds = log.read_text().splitlines() if log.exists() else []
    return cmds, out.stdout, resolv.read_text() if resolv.exists() else ""


def test_bound_sets_address_router_mtu_and_dns(tmp_path: Path) -> None:
    cmds, out, resolv = run(tmp_path, "bound", ip="10.0.1.10", mask="24", router="10.0.1.1",
                            mtu="1442", dns="10.0.0.53 10.0.0.54", lease="600")  # fmt: skip
    assert "-4 addr add 10.0.1.10/24 dev eth0" in cmds
    assert "link set dev eth0 mtu 1442" in cmds
    assert "-4 route replace default via 10.0.1.1 dev eth0 proto static" in cmds
    assert resolv == "nameserver 10.0.0.53\nnameserver 10.0.0.54\n"
    assert "vnet-dhcp bound 10.0.1.10/24 lease 600" in out


def test_classless_routes_win_over_the_router(tmp_path: Path) -> None:
    cmds, out, _ = run(tmp_path, "renew", ip="10.0.1.10", mask="24", router="10.0.1.1",
                       staticroutes="0.0.0.0/0 10.0.1.1 192.168.0.0/16 10.0.1.5", lease="600")  # fmt: skip
    routes = [c for c in cmds if "route replace" in c]
    assert routes == [
        "-4 route replace 0.0.0.0/0 via 10.0.1.1 dev eth0 proto static",
        "-4 route replace 192.168.0.0/16 via 10.0.1.5 dev eth0 proto static",
    ]
    assert "vnet-dhcp renew 10.0.1.10/24" in out


def test_deconfig_flushes_and_the_host_resolv_conf_is_never_named(tmp_path: Path) -> None:
    cmds, out, _ = run(tmp_path, "deconfig")
    assert cmds == ["-4 addr flush dev eth0"] and "vnet-dhcp deconfig" in out
    assert "/etc/resolv.conf" not in udhcpc_script(str(tmp_path / "r"))


def test_addressing_mode_is_static_unless_dhcp_and_refuses_others() -> None:
    assert mode({}) == "static" and mode({"addressing": "dhcp"}) == "dhcp"
    with pytest.raises(ValueError, match="addressing"):
        mode({"addressing": "slaac"})
    with pytest.raises(ValueError, match="resolv"):
        udhcpc_script("it's")

"""The FTP helper on real namespaces: vsftpd and curl through a stateful firewall.

One flow file, added with `vnet ofctl add-flow` to a vnet switch and to Open
vSwitch's userspace datapath: new connections may start only from the client
(port 1) to the server's port 21, committed with `ct(alg=ftp)`; established
traffic passes both ways, and so do connections the helper expects (`+rel`).
An active transfer (the server connects back to the port the client's PORT
names) and a passive one (the client connects to the port the server's 227
names) both work.  Without `alg=ftp` in the flows the data connection is
refused -- what proves the helper is doing the work.  The same again through
source NAT (`nat(src=...)` on the client's way out): the client's PORT
address is rewritten to the translated one (vsftpd refuses a PORT naming
another host than the control connection's peer) and the data connection,
either way, is translated as its control connection is (vsftpd refuses a
passive data connection from another peer).

Open vSwitch reads PORT and 227 on IPv4 (EPRT and EPSV only on IPv6), so curl
is told to use those there; vnet also reads curl's default EPRT and EPSV on
IPv4, as Linux does.  Transmit checksum offload is off in the namespaces, as
Open vSwitch's userspace tracker needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vnet.testing.netns import Lab, run, wait_for

from .switch_rig import cabled_hosts, programmed_switch

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

C, S, X = "10.81.0.1", "10.81.0.2", "10.81.0.200"  # client, server, the client as translated
MAC_C, MAC_S = "02:00:00:00:81:01", "02:00:00:00:81:02"
ALG = "alg=ftp,"
FLOWS = """\
table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1,zone=1{nat})
table=0,priority=10,arp,in_port=1,actions=output:2
table=0,priority=10,arp,in_port=2,actions=output:1
table=1,priority=20,in_port=1,tcp,tp_dst=21,ct_state=+new+trk,actions=ct(commit,zone=1,{alg}{snat}),output:2
table=1,priority=10,in_port=1,ip,ct_state=+new+rel+trk,actions=ct(commit,zone=1{nat}),output:2
table=1,priority=10,in_port=2,ip,ct_state=+new+rel+trk,actions=ct(commit,zone=1{nat}),output:1
table=1,priority=10,in_port=1,ip,ct_state=+est+trk,actions=output:2
table=1,priority=10,in_port=2,ip,ct_state=+est+trk,actions=output:1
table=1,priority=30,ip,ct_state=+inv+trk,actions=drop
"""
CONTENT = bytes(range(256)) * 800  # 200 KB: many data segments, one control connection
# (curl options, what the control connection carries): active and passive, plain and extended
PORT = (("-P", C, "--disable-eprt"), "PORT")
PASV = (("--disable-epsv",), "PASV")
EPRT = (("-P", C), "EPRT")
EPSV = ((), "EPSV")


def flows(alg: bool, nat: bool) -> list[str]:
    text = FLOWS.format(
        alg=ALG if alg else "",
        nat=",nat" if nat else "",
        snat=f"nat(src={X})" if nat else "",
    )
    return [f.replace(",)", ")") for f in text.splitlines()]


class Ftp:
    """A client and a vsftpd server namespace, cabled to the switch under test."""

    def __init__(self, lab: Lab, tmp: Path, kind: str, rules: list[str]) -> None:
        if shutil.which("vsftpd") is None or shutil.which("curl") is None:
            pytest.fail(
                "vsftpd or curl missing: `make test` installs them (scripts/ensure-deps.sh)"
            )
        self.lab, self.tmp = lab, tmp
        (self.client, self.server), ports, peers = cabled_hosts(lab, "ft", [(C, MAC_C), (S, MAC_S)])
        # the translated client address lives behind the switch, at the client's MAC
        lab.exec(self.server, "ip", "neigh", "add", X, "lladdr", MAC_C, "dev", peers[1])
        (tmp / "sw").mkdir()
        self.target, self.sw = programmed_switch(kind, lab, tmp / "sw", ports, rules)
        self._vsftpd()

    def _vsftpd(self) -> None:
        pub = self.tmp / "pub"
        pub.mkdir(mode=0o755)
        pub.chmod(0o755)  # vsftpd refuses an anonymous root others may write to
        (pub / "file").write_bytes(CONTENT)
        Path("/var/run/vsftpd/empty").mkdir(parents=True, exist_ok=True)
        conf = self.tmp / "vsftpd.conf"
        conf.write_text(
            "\n".join((
                "listen=YES", "listen_ipv6=NO", f"listen_address={S}", "background=NO",
                "anonymous_enable=YES", "no_anon_password=YES", f"anon_root={pub}",
                "local_enable=NO", "write_enable=NO", "seccomp_sandbox=NO",
                "connect_from_port_20=YES", "pasv_min_port=30000", "pasv_max_port=30999",
                # a refused data connection fails in seconds, not in a minute
                "connect_timeout=3", "accept_timeout=3", "data_connection_timeout=10",
                "xferlog_enable=YES", "xferlog_std_format=NO", f"vsftpd_log_file={self.tmp}/xfer.log",
                "secure_chroot_dir=/var/run/vsftpd/empty", "",
            ))
        )  # fmt: skip
        self.lab.spawn("vsftpd", str(conf), ns=self.server, log=self.tmp / "vsftpd.out")

        def listening() -> bool:
            out = run("ip", "netns", "exec", self.server, "ss", "-Htln", "sport", "= :21").stdout
            return S in out

        wait_for(listening, 10, "vsftpd listening")

    def fetch(self, opts: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
        """One download with curl; its exit status, the protocol trace on stderr."""
        got = self.tmp / "got"
        got.unlink(missing_ok=True)
        r = self.lab.exec(self.client, "curl", "-sS", "-v", "--connect-timeout", "4",
                          "--max-time", "15", *opts, f"ftp://{S}/file", "-o", str(got),
                          check=False, timeout=30)  # fmt: skip
        if r.returncode == 0:
            assert got.read_bytes() == CONTENT
        return r


def commands(r: subprocess.CompletedProcess[str]) -> list[str]:
    return [ln[2:].split()[0] for ln in r.stderr.splitlines() if ln.startswith("> ")]


def transfers(ftp: Ftp, modes: list[tuple[tuple[str, ...], str]]) -> None:
    for opts, verb in modes:
        r = ftp.fetch(opts)
        assert r.returncode == 0, (verb, r.stderr[-1500:])
        assert verb in commands(r), r.stderr


@pytest.mark.parametrize("kind", ["vnet", "ovs"])
def test_active_and_passive_transfers_pass_the_firewall(
    lab: Lab, tmp_path: Path, kind: str
) -> None:
    ftp = Ftp(lab, tmp_path, kind, flows(alg=True, nat=False))
    transfers(ftp, [PORT, PASV, *([EPRT, EPSV] if kind == "vnet" else [])])
    if ftp.sw is not None:
        dump = ftp.sw.vnet("ct", "dump", ftp.sw.name, "--zone", "1")
        ctl = f"tcp,orig=(src={C},dst={S},sport="
        assert any(ln.startswith(ctl) and "helper=ftp" in ln for ln in dump.splitlines()), dump
        assert f"orig=(src={S},dst={C},sport=20," in dump  # an active data connection
        assert ",dport=30" in dump  # a passive one, to vsftpd's passive range
        stats = ftp.sw.vnet("ct", "stats", ftp.sw.name)
        assert "ftp_related 4" in stats, stats  # one data connection per transfer


@pytest.mark.parametrize("kind", ["vnet", "ovs"])
def test_without_the_helper_the_data_connection_is_refused(
    lab: Lab, tmp_path: Path, kind: str
) -> None:
    ftp = Ftp(lab, tmp_path, kind, flows(alg=False, nat=False))
    for opts, verb in (PORT, PASV):
        r = ftp.fetch(opts)
        assert r.returncode != 0, (verb, r.stderr[-1500:])
        assert verb in commands(r)  # the control connection itself worked
    if ftp.sw is not None:
        assert "helpers: none" in ftp.sw.vnet("ct", "stats", ftp.sw.name)


@pytest.mark.parametrize("kind", ["vnet", "ovs"])
def test_transfers_through_source_nat(lab: Lab, tmp_path: Path, kind: str) -> None:
    ftp = Ftp(lab, tmp_path, kind, flows(alg=True, nat=True))
    transfers(ftp, [PORT, PASV, *([EPRT, EPSV] if kind == "vnet" else [])])
    log = (tmp_path / "xfer.log").read_text()
    assert f'Client "::ffff:{X}"' in log or f'Client "{X}"' in log, log  # who the server saw
    assert C not in log
    if ftp.sw is not None:
        dump = ftp.sw.vnet("ct", "dump", ftp.sw.name, "--zone", "1")
        # the active data connection, to the translated address, back to the client
        assert f"orig=(src={S},dst={X},sport=20," in dump and f"reply=(src={C},dst={S}," in dump

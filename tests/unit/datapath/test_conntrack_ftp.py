"""The tracker's FTP helper with a stepped clock: expectations, related data connections,
and -- through source NAT -- the rewritten PORT text and the sequence numbers after it."""

from __future__ import annotations

import ipaddress

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from vnet.datapath import ftp
from vnet.datapath.conntrack import DNAT, EST, INV, NEW, REL, RPL, SNAT, TRK, Tracker, format_conn
from vnet.datapath.ctnat import NatRange
from vnet.packet import flowkey as fk
from vnet.packet import nat as natpkt

C, S, X, OTHER = "10.0.0.1", "10.0.1.2", "192.168.100.200", "10.0.7.7"
SNAT_X = NatRange("src", 4, int(ipaddress.ip_address(X)), int(ipaddress.ip_address(X)))
APPLY = NatRange()  # ct(nat): a connection's translation, none set up


def tcp(
    src: str, dst: str, sp: int, dp: int, flags: str, seq: int, ack: int = 0, data: bytes = b""
) -> bytes:
    return bytes(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src=src, dst=dst)
        / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, window=65535)
        / data
    )


class Path:
    """The tracker in front of a wire: each packet tracked (as `ct` in a zone would),
    then NAT's rewrite and the helper's edit written, as the switch does."""

    def __init__(self, ct: Tracker, zone: int = 0) -> None:
        self.ct, self.zone, self.now = ct, zone, 0.0
        self.last_rel: tuple[int, ...] | None = None

    def send(
        self, frame: bytes, commit: bool = False, nat: NatRange | None = None, alg: int = 0
    ) -> tuple[int, Ether]:
        key = fk.extract(frame, 1)
        r = self.ct.process(frame, key, self.zone, self.now, commit=commit, nat=nat, alg=alg)
        assert r.drop is None, r.drop
        self.last_rel = r.orig
        buf = bytearray(frame)
        if r.rewrite is not None:
            natpkt.rewrite(buf, key, r.rewrite)
        if r.edit is not None:
            ftp.apply(buf, key[fk.L3_OFS], key[fk.L4_OFS], 4, r.edit)
        out = Ether(bytes(buf))
        again = Ether(bytes(out))
        del again[IP].chksum, again[IP].len, again[TCP].chksum
        again = Ether(bytes(again))  # scapy's own sums: the wire's must be right
        assert (out[IP].chksum, out[IP].len) == (again[IP].chksum, again[IP].len)
        assert out[TCP].chksum == again[TCP].chksum
        return r.state, out


def control(p: Path, alg: int = 21, nat: NatRange | None = None) -> str:
    """A control connection C:40000 -> S:21 made and answered; the client's address
    as the server sees it."""
    peer = X if nat is not None else C
    st, out = p.send(tcp(C, S, 40000, 21, "S", 1000), commit=True, nat=nat, alg=alg)
    assert st & (TRK | NEW) == TRK | NEW and out[IP].src == peer
    st, out = p.send(tcp(S, peer, 21, 40000, "SA", 5000, 1001), nat=APPLY if nat else None)
    assert st & (EST | RPL) == EST | RPL and out[IP].dst == C
    st, _ = p.send(tcp(C, S, 40000, 21, "A", 1001, 5001), nat=APPLY if nat else None)
    assert st & EST
    return peer


def test_port_makes_the_server_connection_related() -> None:
    ct = Tracker()
    p = Path(ct, zone=3)
    control(p)
    (conn,) = ct.conns()
    assert format_conn(conn, 0).endswith(",helper=ftp")
    st, _ = p.send(tcp(C, S, 40000, 21, "PA", 1001, 5001, b"PORT 10,0,0,1,4,1\r\n"))
    assert st == TRK | EST
    assert ct.stats(0)["expectations"] == 1
    conn.mark = 7  # the master's mark goes to its data connection
    syn = tcp(S, C, 20, 1025, "S", 9000)
    st, _ = p.send(syn)  # not committed: +rel, nothing kept
    assert st == TRK | NEW | REL and p.last_rel == conn.orig
    assert ct.stats(0)["expectations"] == 1 and len(ct) == 1
    st, _ = p.send(syn, commit=True)
    assert st == TRK | NEW | REL
    assert ct.stats(0)["expectations"] == 0 and len(ct) == 2  # used up
    data = next(c for c in ct.conns() if c is not conn)
    assert data.master == conn.orig and data.mark == 7
    st, _ = p.send(tcp(C, S, 1025, 20, "SA", 300, 9001))
    assert st == TRK | EST | RPL | REL  # every packet of it is related
    st, _ = p.send(tcp(S, C, 20, 1025, "S", 9000))  # the same SYN again is no new expectation
    assert not st & NEW
    assert ct.helpers == {"ftp_expected": 1, "ftp_related": 1}


def test_pasv_makes_the_client_connection_related() -> None:
    ct = Tracker()
    p = Path(ct)
    control(p)
    reply = b"227 Entering Passive Mode (10,0,1,2,117,48).\r\n"
    st, _ = p.send(tcp(S, C, 21, 40000, "PA", 5001, 1001, reply))
    assert st == TRK | EST | RPL
    st, _ = p.send(tcp(C, S, 50000, 117 * 256 + 48, "S", 1), commit=True)
    assert st == TRK | NEW | REL
    # the port from another client address, or to another port, is not expected
    assert p.send(tcp(C, S, 50001, 117 * 256 + 49, "S", 1))[0] == TRK | NEW


def test_without_the_helper_nothing_is_expected() -> None:
    ct = Tracker()
    p = Path(ct)
    control(p, alg=0)
    p.send(tcp(C, S, 40000, 21, "PA", 1001, 5001, b"PORT 10,0,0,1,4,1\r\n"))
    assert p.send(tcp(S, C, 20, 1025, "S", 9000))[0] == TRK | NEW
    (conn,) = ct.conns()
    assert "helper" not in format_conn(conn, 0)


def test_expectations_time_out_are_replaced_and_go_with_their_master() -> None:
    ct = Tracker()
    p = Path(ct)
    control(p)
    p.send(tcp(C, S, 40000, 21, "PA", 1001, 5001, b"PORT 10,0,0,1,4,1\r\n"))
    p.now = ftp.EXPECT_TIMEOUT + 1
    assert p.send(tcp(S, C, 20, 1025, "S", 9000))[0] == TRK | NEW  # too late
    assert ct.stats(p.now)["expectations"] == 0
    seq = 1001 + 19
    p.send(tcp(C, S, 40000, 21, "PA", seq, 5001, b"PORT 10,0,0,1,4,2\r\n"))
    p.send(tcp(C, S, 40000, 21, "PA", seq + 19, 5001, b"PORT 10,0,0,1,4,3\r\n"))
    assert ct.stats(p.now)["expectations"] == 1  # one at a time: the newest
    assert p.send(tcp(S, C, 20, 1026, "S", 9000))[0] == TRK | NEW
    other_zone = Path(ct, zone=9)
    other_zone.now = p.now
    assert other_zone.send(tcp(S, C, 20, 1027, "S", 9000))[0] == TRK | NEW  # zones apart
    assert ct.flush() == 1
    assert ct.stats(p.now)["expectations"] == 0  # gone with the control connection
    p2 = Path(ct)
    control(p2)
    p2.send(tcp(C, S, 40000, 21, "PA", 1001, 5001, b"PORT 10,0,0,1,4,1\r\n"))
    p2.send(tcp(C, S, 40000, 21, "R", 1020))  # the control connection is reset: 10 s left
    assert ct.expire(11) == 1  # long before the expectation's own time
    assert ct.stats(11)["expectations"] == 0


def test_bad_commands_are_invalid_and_cut_lines_are_counted() -> None:
    ct = Tracker()
    p = Path(ct)
    control(p)
    bounce = b"PORT 10,0,7,7,0,25\r\n"  # a third host: the FTP bounce
    st, _ = p.send(tcp(C, S, 40000, 21, "PA", 1001, 5001, bounce))
    assert st == TRK | EST | INV and ct.drops["ftp_invalid"] == 1
    st, _ = p.send(tcp(C, S, 40000, 21, "PA", 1001 + len(bounce), 5001, b"PORT 1,2,3\r\n"))
    assert st & INV and ct.drops["ftp_invalid"] == 2
    st, _ = p.send(tcp(C, S, 40000, 21, "PA", 1001 + len(bounce) + 12, 5001, b"PORT 10,0,0"))
    assert st == TRK | EST  # a line cut by the segment passes unread
    assert ct.helpers["ftp_partial"] == 1 and ct.stats(0)["expectations"] == 0
    assert p.send(tcp(S, OTHER, 20, 25, "S", 1))[0] == TRK | NEW


def test_active_through_snat_rewrites_port_and_moves_the_sequence_numbers() -> None:
    ct = Tracker()
    p = Path(ct)
    control(p, nat=SNAT_X)
    port = b"PORT 10,0,0,1,4,1\r\n"
    st, out = p.send(tcp(C, S, 40000, 21, "PA", 1001, 5001, port), nat=APPLY)
    assert st == TRK | EST | SNAT and out[IP].src == X
    assert bytes(out[TCP].payload) == b"PORT 192,168,100,200,4,1\r\n"  # what the server reads
    grown = len("192,168,100,200") - len("10,0,0,1")
    assert out[TCP].seq == 1001
    end = 1001 + len(port)  # the client's numbering; the server's is `grown` ahead
    # the server acknowledges in its numbering; the client gets its own back
    st, out = p.send(tcp(S, X, 21, 40000, "PA", 5001, end + grown, b"200 OK\r\n"), nat=APPLY)
    assert st == TRK | EST | RPL | DNAT and out[IP].dst == C
    assert out[TCP].ack == end
    st, out = p.send(tcp(C, S, 40000, 21, "PA", end, 5009, b"RETR f\r\n"), nat=APPLY)
    assert st == TRK | EST | SNAT and out[TCP].seq == end + grown
    # the retransmitted PORT is rewritten again and keeps its place
    st, out = p.send(tcp(C, S, 40000, 21, "PA", 1001, 5009, port), nat=APPLY)
    assert out[TCP].seq == 1001 and bytes(out[TCP].payload).startswith(b"PORT 192,")
    (conn,) = ct.conns()
    assert conn.seqadj is not None and conn.seqadj[0].after == grown
    # the server connects to the translated address; the data connection reaches the client
    st, out = p.send(tcp(S, X, 20, 1025, "S", 9000), commit=True, nat=APPLY)
    assert st == TRK | NEW | REL | DNAT
    assert (out[IP].src, out[IP].dst, out[TCP].dport) == (S, C, 1025)
    st, out = p.send(tcp(C, S, 1025, 20, "SA", 300, 9001), nat=APPLY)
    assert st == TRK | EST | RPL | REL | SNAT and out[IP].src == X
    assert ct.helpers == {"ftp_expected": 2, "ftp_related": 1, "ftp_rewritten": 2}


def test_passive_through_snat_translates_the_data_connection_as_its_master() -> None:
    ct = Tracker()
    p = Path(ct)
    control(p, nat=SNAT_X)
    reply = b"227 Entering Passive Mode (10,0,1,2,117,48).\r\n"
    st, out = p.send(tcp(S, X, 21, 40000, "PA", 5001, 1001, reply), nat=APPLY)
    assert bytes(out[TCP].payload) == reply  # the server's address needs no change
    st, out = p.send(tcp(C, S, 50000, 117 * 256 + 48, "S", 1), commit=True, nat=APPLY)
    assert st == TRK | NEW | REL | SNAT and out[IP].src == X  # the server sees the same peer
    (data,) = (c for c in ct.conns() if c.master is not None)
    assert data.reply[3:5] == (int(ipaddress.ip_address(S)), int(ipaddress.ip_address(X)))
    # without nat on its commit the data connection is left as it is (Open vSwitch)
    ct2 = Tracker()
    p2 = Path(ct2)
    control(p2, nat=SNAT_X)
    p2.send(tcp(S, X, 21, 40000, "PA", 5001, 1001, reply), nat=APPLY)
    st, out = p2.send(tcp(C, S, 50000, 117 * 256 + 48, "S", 1), commit=True)
    assert st == TRK | NEW | REL and out[IP].src == C


def test_ipv6_eprt_through_source_nat_and_epsv() -> None:
    c6, s6, x6 = "fd00::1", "fd00:1::2", "2001:db8:ffff::a:b:c"
    x = int(ipaddress.ip_address(x6))
    ct = Tracker()

    def send(src: str, dst: str, sp: int, dp: int, flags: str, seq: int, ack: int = 0,
             data: bytes = b"", **kw: object) -> tuple[int, Ether]:  # fmt: skip
        frame = bytes(
            Ether() / IPv6(src=src, dst=dst)
            / TCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, window=65535) / data
        )  # fmt: skip
        key = fk.extract(frame, 1)
        r = ct.process(frame, key, 0, 0.0, **kw)
        buf = bytearray(frame)
        if r.rewrite is not None:
            natpkt.rewrite(buf, key, r.rewrite)
        if r.edit is not None:
            ftp.apply(buf, key[fk.L3_OFS], key[fk.L4_OFS], 6, r.edit)
        out = Ether(bytes(buf))
        again = out.copy()
        del again[IPv6].plen, again[TCP].chksum
        again = Ether(bytes(again))
        assert (out[IPv6].plen, out[TCP].chksum) == (again[IPv6].plen, again[TCP].chksum)
        return r.state, out

    send(c6, s6, 40000, 21, "S", 1000, commit=True, alg=21, nat=NatRange("src", 6, x, x))
    send(s6, x6, 21, 40000, "SA", 5000, 1001, nat=APPLY)
    send(c6, s6, 40000, 21, "A", 1001, 5001, nat=APPLY)
    st, out = send(c6, s6, 40000, 21, "PA", 1001, 5001, b"EPRT |2|fd00::1|5000|\r\n", nat=APPLY)
    assert out[IPv6].src == x6 and bytes(out[TCP].payload) == f"EPRT |2|{x6}|5000|\r\n".encode()
    st, out = send(s6, x6, 20, 5000, "S", 1, commit=True, nat=APPLY)
    assert st == TRK | NEW | REL | DNAT and out[IPv6].dst == c6
    epsv = b"229 Entering Extended Passive Mode (|||6000|)\r\n"
    send(s6, x6, 21, 40000, "PA", 5001, 1001 + 23 + 13, epsv, nat=APPLY)
    st, out = send(c6, s6, 50000, 6000, "S", 1, commit=True, nat=APPLY)
    assert st == TRK | NEW | REL | SNAT and out[IPv6].src == x6

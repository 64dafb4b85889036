"""The FTP helper's reading, expectations and rewriting; scapy judges the rewritten frames."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from vnet.datapath import ftp
from vnet.datapath.ftp import BadCommand, Command, Incomplete, SeqAdj
from vnet.packet import flowkey as fk
from vnet.packet.checksum import internet_checksum, pseudo_header_v4


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


# -- reading ------------------------------------------------------------------------------
def test_port_from_the_client() -> None:
    line = b"PORT 10,0,0,1,195,80\r\n"
    cmd = ftp.parse(line, reply=False)
    assert cmd == Command("PORT", ip("10.0.0.1"), 4, 195 * 256 + 80, (5, 13))
    assert line[5:13] == b"10,0,0,1"
    assert not cmd.passive
    assert ftp.parse(b"port   10,0,0,1,4,1\r\nLIST\r\n", reply=False) == Command(
        "PORT", ip("10.0.0.1"), 4, 1025, (7, 15)
    )  # commands are case-insensitive; only the first line counts


def test_pasv_reply_from_the_server() -> None:
    line = b"227 Entering Passive Mode (192,168,1,2,4,1).\r\n"
    cmd = ftp.parse(line, reply=True)
    assert cmd is not None and cmd.passive
    assert (cmd.verb, cmd.addr, cmd.port) == ("227", ip("192.168.1.2"), 1025)
    assert line[cmd.span[0] : cmd.span[1]] == b"192,168,1,2"
    # RFC 1123: the numbers may stand without parentheses
    cmd = ftp.parse(b"227 =10,1,2,3,0,21\n", reply=True)
    assert cmd is not None and (cmd.addr, cmd.port) == (ip("10.1.2.3"), 21)


def test_extended_commands_for_both_families() -> None:
    line = b"EPRT |2|fd00::1|50001|\r\n"
    cmd = ftp.parse(line, reply=False)
    assert cmd is not None and (cmd.verb, cmd.version, cmd.addr, cmd.port) == (
        "EPRT", 6, ip("fd00::1"), 50001,
    )  # fmt: skip
    assert line[cmd.span[0] : cmd.span[1]] == b"fd00::1"
    line = b"EPRT  !1!10.0.0.9!2000!\r\n"  # any delimiter, extra spaces
    cmd = ftp.parse(line, reply=False)
    assert cmd is not None and (cmd.version, cmd.addr, cmd.port) == (4, ip("10.0.0.9"), 2000)
    assert line[cmd.span[0] : cmd.span[1]] == b"10.0.0.9"
    cmd = ftp.parse(b"229 Entering Extended Passive Mode (|||6446|).\r\n", reply=True)
    assert cmd == Command("229", None, 0, 6446, (39, 39))
    assert cmd.passive


@pytest.mark.parametrize(
    ("payload", "reply"),
    [
        (b"USER anonymous\r\n", False),
        (b"230 Login successful.\r\n", True),
        (b"PORT 10,0,0,1,4,1\r\n", True),  # a server does not send PORT
        (b"227 Entering Passive Mode (10,0,0,1,4,1)\r\n", False),  # nor a client 227
        (b"2270 (10,0,0,1,4,1)\r\n", True),
        (b"", False),
        (b"", True),
        (b"PAS", False),
    ],
)
def test_other_lines_announce_nothing(payload: bytes, reply: bool) -> None:
    assert ftp.parse(payload, reply) is None


def test_a_line_cut_by_the_segment_is_not_read() -> None:
    with pytest.raises(Incomplete) as e:
        ftp.parse(b"PORT 10,0,0,1,4", reply=False)
    assert e.value.reason == "ftp_partial"
    with pytest.raises(Incomplete):
        ftp.parse(b"227 Entering Passive Mode (10,0,0,1," + b" " * 600 + b"\r\n", reply=True)


@pytest.mark.parametrize(
    ("payload", "reply", "token"),
    [
        (b"PORT 10,0,0,1,4\r\n", False, "'10,0,0,1,4'"),
        (b"PORT 256,0,0,1,4,1\r\n", False, "'256'"),
        (b"PORT 10,0,0,1,4,1000\r\n", False, "'1000'"),
        (b"PORT 10,0,0,1,0,0\r\n", False, "port 0"),
        (b"PORT 10,0,0,1,4,1 junk\r\n", False, "'junk'"),
        (b"PORT 10,,0,1,4,1\r\n", False, "''"),
        (b"PORTX 10,0,0,1,4,1\r\n", False, "no space"),
        (b"PORT \xff\xfe\r\n", False, "ASCII"),
        (b"EPRT |3|10.0.0.1|5|\r\n", False, "'3'"),
        (b"EPRT |1|fd00::1|5|\r\n", False, "'fd00::1'"),
        (b"EPRT |2|zz::1|5|\r\n", False, "'zz::1'"),
        (b"EPRT |1|10.0.0.1|70000|\r\n", False, "'70000'"),
        (b"EPRT |1|10.0.0.1|0|\r\n", False, "port 0"),
        (b"EPRT |1|10.0.0.1|5\r\n", False, "'|1|10.0.0.1|5'"),
        (b"EPRT a1a10.0.0.1a5a\r\n", False, "'a'"),
        (b"EPRT\r\n", False, "no argument"),
        (b"227 Entering Passive Mode\r\n", True, "no address"),
        (b"227 Entering Passive Mode (10,0,0,1,4)\r\n", True, "'10,0,0,1,4'"),
        (b"229 Entering Extended Passive Mode\r\n", True, "no (|||port|)"),
        (b"229 Entering Extended Passive Mode (|||x|)\r\n", True, "'x'"),
        (b"229 Entering Extended Passive Mode (|1|2|)\r\n", True, "'(|1|2|)'"),
        (b"229 Entering Extended Passive Mode (|||123\r\n", True, "'(|||123'"),
    ],
)
def test_malformed_commands_name_the_token(payload: bytes, reply: bool, token: str) -> None:
    with pytest.raises(BadCommand) as e:
        ftp.parse(payload, reply)
    assert token in str(e.value)
    assert e.value.reason == "ftp_invalid"


@given(
    st.binary(max_size=80),
    st.booleans(),
    st.sampled_from([b"", b"PORT ", b"EPRT ", b"227 ", b"229 ("]),
)
def test_random_bytes_never_crash_the_reader(data: bytes, reply: bool, head: bytes) -> None:
    try:
        cmd = ftp.parse(head + data, reply)
    except ftp.FtpError:
        return
    if cmd is not None:
        assert 0 < cmd.port <= 65535
        assert 0 <= cmd.span[0] <= cmd.span[1] <= len(head + data)


# -- the data connection ------------------------------------------------------------------
C, S, X, V = ip("10.0.0.1"), ip("10.0.1.2"), ip("192.168.100.200"), ip("10.0.9.9")


def conn(src: int, dst: int, rsrc: int, rdst: int) -> tuple[ftp.Tuple, ftp.Tuple]:
    return (3, 4, 6, src, dst, 40000, 21), (3, 4, 6, rsrc, rdst, 21, 40000)


def test_active_without_nat_expects_the_server_to_connect_back() -> None:
    orig, reply = conn(C, S, S, C)
    cmd = ftp.parse(b"PORT 10,0,0,1,4,1\r\n", reply=False)
    assert cmd is not None
    e, addr = ftp.expect(cmd, orig, reply)
    assert e == ftp.Expectation((3, 4, 6, S, C, 1025), C, S)
    assert addr == C  # nothing to rewrite


def test_active_through_snat_expects_the_translated_address_and_rewrites_it() -> None:
    orig, reply = conn(C, S, S, X)  # the client leaves as X
    cmd = ftp.parse(b"PORT 10,0,0,1,4,1\r\n", reply=False)
    assert cmd is not None
    e, addr = ftp.expect(cmd, orig, reply)
    # the server connects to X; the data connection's replies come from the client
    assert e == ftp.Expectation((3, 4, 6, S, X, 1025), C, S)
    assert addr == X and ftp.rewrite(cmd, X) == b"192,168,100,200"
    # a client that already names its public address is taken at its word
    cmd = ftp.parse(b"PORT 192,168,100,200,4,1\r\n", reply=False)
    assert cmd is not None and ftp.expect(cmd, orig, reply)[1] == X


def test_passive_through_snat_and_dnat() -> None:
    cmd = ftp.parse(b"227 Entering Passive Mode (10,0,1,2,4,1).\r\n", reply=True)
    assert cmd is not None
    orig, reply = conn(C, S, S, X)  # SNAT
    e, addr = ftp.expect(cmd, orig, reply)
    assert e == ftp.Expectation((3, 4, 6, C, S, 1025), S, X) and addr == S
    orig, reply = conn(C, V, S, C)  # DNAT: the client knows the server as V
    e, addr = ftp.expect(cmd, orig, reply)
    assert e == ftp.Expectation((3, 4, 6, C, V, 1025), S, C) and addr == V
    assert ftp.rewrite(cmd, V) == b"10,0,9,9"
    epsv = ftp.parse(b"229 Entering Extended Passive Mode (|||5000|)\r\n", reply=True)
    assert epsv is not None
    assert ftp.expect(epsv, orig, reply) == (ftp.Expectation((3, 4, 6, C, V, 5000), S, C), None)


def test_a_third_address_or_another_family_is_refused() -> None:
    orig, reply = conn(C, S, S, X)
    bounce = ftp.parse(b"PORT 10,0,7,7,0,25\r\n", reply=False)  # the FTP bounce
    assert bounce is not None
    with pytest.raises(BadCommand, match=r"10\.0\.7\.7 is not the client's address"):
        ftp.expect(bounce, orig, reply)
    other = ftp.parse(b"227 Entering Passive Mode (10,0,7,7,4,1).\r\n", reply=True)
    assert other is not None
    with pytest.raises(BadCommand, match=r"10\.0\.7\.7 is not the server's address"):
        ftp.expect(other, orig, reply)
    v6 = ftp.parse(b"EPRT |2|fd00::1|5000|\r\n", reply=False)
    assert v6 is not None
    with pytest.raises(BadCommand, match="IPv6 address on an IPv4 connection"):
        ftp.expect(v6, orig, reply)


def test_eprt_rewrite_writes_the_family_text() -> None:
    cmd = ftp.parse(b"EPRT |2|fd00::1|5000|\r\n", reply=False)
    assert cmd is not None
    assert ftp.rewrite(cmd, ip("2001:db8::a:0:0:1")) == b"2001:db8::a:0:0:1"


# -- the segment --------------------------------------------------------------------------
MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def seg(payload: bytes, v6: bool = False, **tcp: object) -> bytearray:
    l3: Packet = IPv6(src="fd00::1", dst="fd00::2") if v6 else IP(src="10.0.0.1", dst="10.0.1.2")
    args = {"sport": 40000, "dport": 21, "flags": "PA", "seq": 1000, "ack": 5000, **tcp}
    return bytearray(bytes(Ether(**MAC) / l3 / TCP(**args) / payload))


def checked(frame: bytes | bytearray) -> Packet:
    """The frame as scapy reads it, after checking every checksum and length."""
    p = Ether(bytes(frame))
    again = p.copy()
    if IP in again:
        del again[IP].chksum, again[IP].len
    else:
        del again[IPv6].plen
    del again[TCP].chksum
    again = Ether(bytes(again))
    if IP in p:
        assert p[IP].chksum == again[IP].chksum and p[IP].len == again[IP].len
    else:
        assert p[IPv6].plen == again[IPv6].plen
    assert p[TCP].chksum == again[TCP].chksum, "TCP checksum"
    return p


def rewrite_frame(frame: bytearray, reply: bool, addr: int) -> int:
    key = fk.extract(bytes(frame), 1)
    l3, l4, v = key[fk.L3_OFS], key[fk.L4_OFS], 6 if key[fk.ETH_TYPE] == 0x86DD else 4
    start, _ = ftp.payload_span(frame, l3, l4, v)
    cmd = ftp.parse(frame[start:], reply)
    assert cmd is not None
    a, b = cmd.span
    return ftp.replace(frame, l3, l4, v, start + a, start + b, ftp.rewrite(cmd, addr))


@pytest.mark.parametrize("lead", [b" ", b"  "])  # the address at an even and an odd offset
def test_a_rewrite_that_grows_the_segment_keeps_it_whole(lead: bytes) -> None:
    frame = seg(b"PORT" + lead + b"10,0,0,1,4,1\r\nNOOP\r\n")
    delta = rewrite_frame(frame, False, X)
    assert delta == len("192,168,100,200") - len("10,0,0,1")
    p = checked(frame)
    assert bytes(p[TCP].payload) == b"PORT" + lead + b"192,168,100,200,4,1\r\nNOOP\r\n"


def test_a_rewrite_that_shrinks_drops_the_padding_and_keeps_a_bad_checksum_bad() -> None:
    frame = seg(b"PORT 192,168,100,200,4,1\r\n")
    frame += b"\x00" * 6  # trailing Ethernet padding is not data
    assert rewrite_frame(frame, False, ip("1.2.3.4")) == -8
    assert bytes(checked(frame)[TCP].payload) == b"PORT 1,2,3,4,4,1\r\n"
    bad = seg(b"PORT 10,0,0,1,4,1\r\n", chksum=0x1234)
    rewrite_frame(bad, False, X)
    p = Ether(bytes(bad))
    good = Ether(bytes(seg(b"PORT 192,168,100,200,4,1\r\n")))
    assert p[TCP].chksum != good[TCP].chksum  # wrong before, wrong after
    assert bytes(p[TCP].payload) == bytes(good[TCP].payload)


def test_an_ipv6_eprt_rewrite() -> None:
    frame = seg(b"EPRT |2|fd00::1|5000|\r\n", v6=True)
    assert rewrite_frame(frame, False, ip("2001:db8:ffff::1:2:3")) == 13
    assert bytes(checked(frame)[TCP].payload) == b"EPRT |2|2001:db8:ffff::1:2:3|5000|\r\n"


# -- sequence numbers ---------------------------------------------------------------------
def test_seqadj_moves_segments_after_the_change_only() -> None:
    a = SeqAdj()
    a.record(1000, 7)  # the segment at 1000 grew by 7
    assert (a.offset(1000), a.offset(999), a.offset(1001)) == (0, 0, 7)
    a.record(1000, 7)  # its retransmission is rewritten again: nothing more to add
    assert (a.pos, a.before, a.after) == (1000, 0, 7)
    a.record(2000, -3)  # a later change adds up
    assert (a.offset(1500), a.offset(2001)) == (7, 4)
    w = SeqAdj()
    w.record(0xFFFFFFF0, 5)  # across the wrap
    assert w.offset(3) == 5 and w.offset(0xFFFFFFE0) == 0


def test_seq_ack_and_sack_follow_the_change() -> None:
    a = SeqAdj()
    a.record(1000, 7)
    frame = seg(b"LIST\r\n", seq=1030)
    ftp.adjust_seq(frame, 34, a)
    assert checked(frame)[TCP].seq == 1037
    again = seg(b"PORT 10,0,0,1,4,1\r\n", seq=1000)  # the changed segment, sent again
    ftp.adjust_seq(again, 34, a)
    assert checked(again)[TCP].seq == 1000
    # the server acknowledges in the numbering it saw; the client gets its own back
    sack = [("SAck", (1040, 1050, 990, 995))]
    for opts in (sack, [("NOP", None), *sack]):  # blocks at even and odd offsets
        back = seg(b"", sport=21, dport=40000, flags="A", seq=5000, ack=1037, options=opts)
        ftp.adjust_ack(back, 34, a)
        p = checked(back)
        assert p[TCP].ack == 1030
        assert dict(p[TCP].options)["SAck"] == (1033, 1043, 990, 995)
    unchanged = seg(b"", sport=21, dport=40000, flags="A", seq=5000, ack=1000)
    before = bytes(unchanged)
    ftp.adjust_ack(unchanged, 34, a)
    assert bytes(unchanged) == before


def test_an_edit_moves_seq_and_ack_then_rewrites_the_text() -> None:
    this, other = SeqAdj(), SeqAdj()
    this.record(900, 7)  # an earlier change this way
    other.record(4000, -2)  # and one the other way
    frame = seg(b"PORT 10,0,0,1,4,1\r\n", seq=1000, ack=5000)
    e = ftp.Edit(this, other, (5, 13, b"192,168,100,200"))
    assert ftp.apply(frame, 14, 34, 4, e) == 7
    p = checked(frame)
    assert (p[TCP].seq, p[TCP].ack) == (1007, 5002)
    assert bytes(p[TCP].payload) == b"PORT 192,168,100,200,4,1\r\n"
    assert ftp.apply(frame, 14, 34, 4, ftp.Edit()) == 0


def test_a_checksum_left_to_the_device_gets_only_the_new_length() -> None:
    def pseudo(n: int) -> int:  # what NEEDS_CSUM leaves in the field: not complemented
        return ~internet_checksum(pseudo_header_v4(C, S, 6, n)) & 0xFFFF

    payload = b"PORT 10,0,0,1,4,1\r\n"
    frame = seg(payload, chksum=pseudo(20 + len(payload)))
    this = SeqAdj()
    this.record(10, 3)
    e = ftp.Edit(this, None, (5, 13, b"192,168,100,200"))
    assert ftp.apply(frame, 14, 34, 4, e, partial=True) == 7
    p = Ether(bytes(frame))
    assert p[TCP].seq == 1003 and p[IP].len == 20 + 20 + len(payload) + 7
    assert p[TCP].chksum == pseudo(20 + len(payload) + 7)

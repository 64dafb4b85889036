"""Connection tracking: what the `ct` action asks, answered as Linux and Open vSwitch do.

A connection is stored under both directions' tuples -- (zone, IP version,
protocol, source, destination, source port, destination port) -- so a
packet finds its connection, and which way it travels, with one dict
lookup.  The zone keeps tables apart: the controller gives each logical
port (and each router doing NAT) its own, as OVN does.

What `ct` reports is `ct_state`: `trk` always; `new` for a connection not
yet answered (or not yet committed); `est` once the other side has replied;
`rel` for an ICMP/ICMPv6 error quoting a tracked connection; `rpl` for the
reply direction; `inv` for what cannot be tracked or breaks the rules
(malformed transport headers, TCP flag combinations no stack sends, segments
outside the window, a SYN+ACK that would open a connection, fragments, ICMP
types that are neither echo nor error).  Only `commit` creates an entry; a
new connection that is not committed leaves nothing behind.

TCP is tracked with the window algorithm of pf and Open vSwitch's userspace
tracker (`conntrack_tcp`): a segment must fall inside the other side's
window, a RST must carry (nearly) the next sequence number.
Per-state timeouts are Linux's defaults (`TIMEOUTS`, configurable); an
expired entry is gone on its next lookup and swept by `expire`.

NAT (`ctnat` chooses, `packet.nat` writes): a commit with `nat(src=...)` or
`nat(dst=...)` stores the connection under a translated reply tuple, chosen
free of every tuple in the table (`ct_nat_exhausted` when none is left: the
packet dropped, no entry made), so replies find it with the same one lookup.
A `ct` with `nat` then hands back the packet's translation (`CtResult.rewrite`)
-- the original direction becomes the mirror of the reply tuple, a reply the
mirror of the original, a related ICMP error is translated outside and in the
quote -- and sets `+snat`/`+dnat` as Open vSwitch does; a `ct` without `nat`
matches the packet as it is.  A packet is translated at most once per zone:
the NAT bits an earlier `ct` in the zone set stay, and such a packet finds its
connection by the original tuple it carries (as Linux keeps a packet's
connection; Open vSwitch's userspace tracker would commit the translated
tuple anew).  A plain commit whose reply tuple a translation holds is refused
(`ct_nat_clash`); a range of the other address family drops (`ct_nat_family`).
`force` deletes a connection found in its reply direction, and the packet
starts a new one.

Helpers: a TCP connection committed with `alg=ftp` (21) keeps the FTP
helper (`ftp`), which reads every later segment of it: a PORT, EPRT, 227 or
229 sets up an expectation (per zone, one per master, `ftp.EXPECT_TIMEOUT`,
gone when used or with its master); a new connection matching it is
`+new+rel` -- `+rel` for good -- with its master's mark, label and original
tuple, and when committed with `nat` takes its master's translation.  A
translated control segment also gets `CtResult.edit`: the address text to
write and its sequence numbers, moved by the per-direction corrections
(`Conn.seqadj`) a rewrite of another length leaves; the window tracker reads
acknowledgements back in the sender's numbering.  A bad command is `inv`.

Limits: a total and per-zone number of entries; a commit beyond them is
refused and the packet dropped, counted as `ct_limit`.  Fragments are
reassembled before they get here (the switch's `ipf`, as Open vSwitch's
lib/ipf.c): the tracker sees whole datagrams.  A fragment that reaches it
anyway (reassembly turned off) is `inv` and counted (`ct_fragment`).

Pure apart from the clock it is given (`now` on every call): tested with a
stepped clock.  The switch calls `process` for every packet that reaches a
`ct` action -- cached decisions included -- so windows, FIN/RST and
timeouts stay exact.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..packet import flowkey as fk
from ..packet.addr import ip4_str, ip6_str
from ..packet.nat import Rewrite
from . import ftp
from .conntrack_tcp import SYN, TCP_STATE_NAMES, Peer, tcp_new, tcp_run, tcp_update, tcp_valid_new
from .ctnat import NatRange, Tuple, allocate, error_rewrite, packet_rewrite

__all__ = [
    "DNAT",
    "EST",
    "INV",
    "NEW",
    "REL",
    "RPL",
    "SNAT",
    "TIMEOUTS",
    "TRK",
    "Conn",
    "CtResult",
    "NatRange",
    "Tracker",
    "format_conn",
]

NEW, EST, REL, RPL, INV, TRK, SNAT, DNAT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

# Linux's defaults (net.netfilter.nf_conntrack_*_timeout), in seconds
TIMEOUTS: dict[str, float] = {
    "tcp_syn_sent": 120,
    "tcp_syn_recv": 60,
    "tcp_established": 432000,
    "tcp_fin_wait": 120,
    "tcp_close_wait": 60,
    "tcp_last_ack": 30,
    "tcp_time_wait": 120,
    "tcp_close": 10,
    "udp": 30,
    "udp_stream": 120,
    "icmp": 30,
}

# ICMP echo request <-> reply, and the error types that quote a packet
_ECHO4 = {8: 0, 0: 8}
_ECHO6 = {128: 129, 129: 128}
_ERR4 = frozenset((3, 4, 5, 11, 12))
_ERR6 = frozenset((1, 2, 3, 4))


@dataclass(slots=True, eq=False)
class Conn:
    """One tracked connection: its two tuples, state, mark and label, timeout."""

    orig: Tuple
    reply: Tuple
    created: float
    expires: float
    timeout: str
    mark: int = 0
    label: int = 0
    nat: str = ""  # "src" or "dst": the reply tuple is translated (not orig's mirror)
    helper: str = ""  # "ftp": committed with ct(alg=ftp), its segments are read
    master: Tuple | None = None  # a connection a helper expected: its master's orig tuple
    seqadj: tuple[ftp.SeqAdj, ftp.SeqAdj] | None = None  # per direction, after a rewrite
    expecting: tuple[int, ...] | None = None  # the expectation this master has set up
    replied: bool = False  # the reply direction has been seen
    peers: tuple[Peer, Peer] | None = None  # TCP: original sender, replier
    rst: bool = False
    packets: list[int] = field(default_factory=lambda: [0, 0])  # per direction
    nbytes: list[int] = field(default_factory=lambda: [0, 0])
    # the last answer given for a packet of it, handed out again while it holds
    # (the switch keys its cache of what follows a `ct` on the answer)
    answer: CtResult | None = None
    gone: bool = False  # removed from the table (a caller may still hold it)

    @property
    def zone(self) -> int:
        return self.orig[0]


class CtResult(NamedTuple):
    """What `ct` tells the pipeline, whether the packet is dropped (reason), and
    what NAT writes into it (`packet.nat.rewrite`; None: nothing), then the FTP
    helper (`ftp.apply`: sequence numbers and the address text)."""

    state: int
    zone: int
    mark: int = 0
    label: int = 0
    orig: Tuple | None = None  # the connection's original-direction tuple
    drop: str | None = None
    rewrite: Rewrite | None = None
    edit: ftp.Edit | None = None


class _Expected(NamedTuple):
    """A data connection a helper expects: what it will look like, who expects it."""

    exp: ftp.Expectation
    master: Conn
    expires: float


class Packet(NamedTuple):
    """A packet as the tracker reads it: its tuple, and what it is."""

    tup: Tuple
    kind: str  # tcp | udp | icmp | error
    inner: Tuple | None  # an ICMP error's quoted tuple, inverted (the reply it answers)


class Tracker:
    def __init__(
        self,
        limit: int = 0,
        zone_limits: dict[int, int] | None = None,
        timeouts: dict[str, float] | None = None,
        seed: int | None = None,
    ) -> None:
        self.limit = limit  # 0: no limit
        self.zone_limits: dict[int, int] = dict(zone_limits or {})
        self.timeouts = {**TIMEOUTS, **(timeouts or {})}
        unknown = set(self.timeouts) - set(TIMEOUTS)
        if unknown:
            raise ValueError(f"timeouts: unknown name {sorted(unknown)[0]!r}")
        self._table: dict[Tuple, tuple[Conn, int]] = {}  # tuple -> (conn, direction)
        self._per_zone: dict[int, int] = {}
        self.drops: dict[str, int] = {}
        self.committed = 0
        # the FTP helper: expected data connections (zone, version, proto, src, dst, dport)
        self._expect: dict[tuple[int, ...], _Expected] = {}
        # the connection and direction of the last `process` that handed out a
        # connection's standing answer, for `follow`; None after any other answer
        self.hot: tuple[Conn, int, Packet] | None = None
        self.helpers: dict[str, int] = {}  # what the helper did and refused, by name
        # NAT: `random` draws from here; the hash of the other flags starts from the basis
        self._rand = random.Random(seed)
        self._basis = self._rand.getrandbits(32)

    # -- reading -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._table) // 2

    def conns(self, zone: int | None = None) -> Iterator[Conn]:
        for conn, d in self._table.values():
            if d == 0 and (zone is None or conn.zone == zone):
                yield conn

    def stats(self, now: float) -> dict[str, Any]:
        by_state: dict[str, int] = {}
        for conn in self.conns():
            name = _state_name(conn)
            by_state[name] = by_state.get(name, 0) + 1
        return {
            "connections": len(self),
            "by_zone": dict(sorted(self._per_zone.items())),
            "by_state": dict(sorted(by_state.items())),
            "committed": self.committed,
            "drops": dict(sorted(self.drops.items())),
            "limit": self.limit,
            "expectations": len(self._expect),
            "helpers": dict(sorted(self.helpers.items())),
        }

    def _count(self, reason: str) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def _note(self, what: str) -> None:
        self.helpers[what] = self.helpers.get(what, 0) + 1

    def reading(self, key: Sequence[int], zone: int) -> Packet | None:
        """How `process` reads every TCP or UDP packet with `key` in `zone` (its
        tuple is all in the key), for a caller to keep and hand back; None for
        what needs the packet's bytes too (ICMP) or cannot be tracked."""
        if key[fk.IP_PROTO] not in (6, 17):
            return None
        p = _classify(None, key, zone)
        return p if isinstance(p, Packet) else None

    # -- changing ----------------------------------------------------------------------
    def flush(self, zone: int | None = None, where: Callable[[Conn], bool] | None = None) -> int:
        """Forget the connections (of `zone`; those `where` picks), and what they expect;
        how many went.  Without `where`, the zone's expectations go too."""
        gone = [c for c in self.conns(zone) if where is None or where(c)]
        for c in gone:
            self._remove(c)
        if where is None:
            for k in [k for k in self._expect if zone is None or k[0] == zone]:
                del self._expect[k]
        return len(gone)

    def expire(self, now: float) -> int:
        gone = [c for c in self.conns() if c.expires <= now]
        for c in gone:
            self._remove(c)
        for k in [k for k, e in self._expect.items() if e.expires <= now]:
            self._unexpect(k)
        return len(gone)

    def _remove(self, conn: Conn) -> None:
        conn.gone = True
        self._table.pop(conn.orig, None)
        self._table.pop(conn.reply, None)
        if conn.expecting is not None:  # what a master expected goes with it
            self._unexpect(conn.expecting)
        z = conn.zone
        self._per_zone[z] -= 1
        if not self._per_zone[z]:
            del self._per_zone[z]

    # -- the ct action -----------------------------------------------------------------
    def follow(self, q: list[tuple[bytes, bytes]], start: int, key: Any, now: float) -> int:
        """How many frames of `q` from `start` on get the answer the last `process`
        gave, tracked here as it would track them one by one.

        For a run of frames with the same headers (the same key and arguments)
        after one whose answer was its connection's standing one (`hot`): the
        lookup, the state and the answer cannot change within the run, so only
        each frame's window check and counters remain.  It stops at the first
        frame that is not plainly valid (expired, out of window, a closed
        connection opened again), leaving it, untouched, to `process`."""
        hot = self.hot
        if hot is None:
            return 0
        conn, d, p = hot
        timeouts = self.timeouts
        packets, nbytes = conn.packets, conn.nbytes
        tcp = conn.peers is not None
        if tcp:
            k, size = tcp_run(conn, d, q, start, key, timeouts, now)
            if k >= 0:  # established both ways, no SYN, FIN or RST
                packets[d] += k
                nbytes[d] += size
                return k
        i, n = start, len(q)
        while i < n:
            frame = q[i][1]
            if conn.expires <= now:
                break
            if tcp:
                if tcp_update(conn, d, frame, key, timeouts, now) != "valid":
                    break
            elif _update(conn, d, p, frame, key, timeouts, now) != "valid":
                break
            packets[d] += 1
            nbytes[d] += len(frame)
            i += 1
        return i - start

    def resume(
        self,
        hot: tuple[Conn, int, Packet],
        r: CtResult,
        q: list[tuple[bytes, bytes]],
        key: Any,
        now: float,
    ) -> int:
        """`follow` from the head of `q`: how many of its frames get `r`, the answer
        `process` gave a frame with the same key earlier (`hot` was its `hot`).

        For a caller that kept `hot` and `r` from one batch of frames to the
        next: the connection must still be in the table and unexpired, and its
        state, mark and label still give `r`; then the frames are tracked as
        `process` would track them one by one.  Only for a `ct` that neither
        commits nor translates (what `process` would write is not written)."""
        conn, d, _ = hot
        if conn.gone or conn.expires <= now or conn.mark != r.mark or conn.label != r.label:
            return 0
        state = TRK | (EST if conn.replied else NEW) | (RPL if d else 0)
        state |= r.state & (SNAT | DNAT) | (REL if conn.master is not None else 0)
        if state != r.state:
            return 0
        self.hot = hot
        return self.follow(q, 0, key, now)

    def process(
        self,
        frame: bytes | bytearray,
        key: tuple[int, ...] | list[int],
        zone: int,
        now: float,
        commit: bool = False,
        mark: tuple[int, int] | None = None,
        label: tuple[int, int] | None = None,
        nat: NatRange | None = None,
        force: bool = False,
        alg: int = 0,
        pkt: Packet | None = None,
    ) -> CtResult:
        """Track one packet in `zone`: its state, and the connection's mark and label.

        `mark` and `label` (value, mask) are written to the connection if it is
        committed now or was before (the `exec` of `ct(commit,...)`).  With
        `nat`, a connection's translation is returned for the packet (set up
        first for a new connection it commits), unless the packet was
        translated in this zone already: `key`'s ct fields are what an earlier
        `ct` said of it.  `force` (implies commit): a connection found in the
        reply direction is deleted and the packet starts a new one.  `alg` 21: a
        TCP connection committed now gets the FTP helper.  `pkt`: the tracker's
        `reading` of `key` in `zone`, when the caller kept it."""
        commit = commit or force
        self.hot = None
        p = pkt if pkt is not None else _classify(frame, key, zone)
        if isinstance(p, str):
            self._count(p)
            return CtResult(TRK | INV, zone)
        # NAT bits an earlier ct in this zone set stay, and keep it from translating twice
        done = key[fk.CT_STATE] & (SNAT | DNAT) if key[fk.CT_ZONE] == zone else 0
        hit = self._table.get(p.tup)  # `_live`, written out: every packet comes here
        if hit is not None and hit[0].expires <= now:
            self._remove(hit[0])
            hit = None
        if hit is not None and force and hit[1]:
            self._remove(hit[0])
            hit = None
        if hit is None and done and p.inner is None:
            # translated already (as Linux keeps the packet's connection, not as Open
            # vSwitch's userspace tracker, which would commit the translated tuple anew)
            hit = self._by_orig(key, p.tup, now)
        if hit is not None:
            conn, d = hit
            xlate = nat is not None and bool(conn.nat) and not done
            seen = frame
            if conn.seqadj is not None and xlate and p.kind == "tcp":
                # the window is kept in each sender's own numbering: the peer's
                # acknowledgement goes back into it before the tracker reads it
                seen = bytearray(frame)
                ftp.adjust_ack(seen, key[fk.L4_OFS], conn.seqadj[1 - d])
            if conn.peers is not None:
                # an established connection's plain segment: the run's check, for one
                verdict = "valid"
                if (
                    seen is not frame
                    or tcp_run(conn, d, ((b"", frame),), 0, key, self.timeouts, now)[0] != 1
                ):
                    verdict = tcp_update(conn, d, seen, key, self.timeouts, now)
            else:
                verdict = _update(conn, d, p, seen, key, self.timeouts, now)
            if verdict == "new":  # a closed TCP connection opened again
                self._remove(conn)
                hit = None
            elif verdict == "invalid":
                self._count("ct_invalid")
                return CtResult(TRK | INV, zone, conn.mark, conn.label, conn.orig)
            else:
                conn.packets[d] += 1
                conn.nbytes[d] += len(frame)
                if d:
                    conn.replied = True
                if (commit or mark or label) and conn.master is None:
                    _set_meta(conn, mark, label)  # a related one keeps its master's
                state = TRK | (EST if conn.replied else NEW) | (RPL if d else 0) | done
                rw = None
                if xlate:
                    rw = packet_rewrite(conn.orig, conn.reply, d)
                    state |= _nat_bits(conn.nat, d)
                edit = None
                if conn.helper == "ftp" and p.kind == "tcp":
                    edit, bad = self._ftp(conn, d, frame, key, xlate, now)
                    if bad:
                        state |= INV  # as Open vSwitch marks a bad command
                orig = conn.orig
                if conn.master is not None:
                    state |= REL
                    orig = conn.master
                if rw is not None or edit is not None:
                    return CtResult(state, zone, conn.mark, conn.label, orig, None, rw, edit)
                r = conn.answer
                if r is None or r.state != state or r.mark != conn.mark or r.label != conn.label:
                    r = conn.answer = CtResult(state, zone, conn.mark, conn.label, orig)
                if not conn.helper and not force:
                    self.hot = (conn, d, p)
                return r
        if p.inner is not None:
            rel = self._live(p.inner, now)
            if rel is None:
                self._count("ct_invalid")
                return CtResult(TRK | INV, zone)
            conn, d = rel
            state = TRK | REL | (RPL if d else 0) | done
            rw = None
            if nat is not None and conn.nat and not done:
                t = p.tup
                rw = error_rewrite(conn.orig, conn.reply, conn.nat, d, t[3], t[4])
                state |= _nat_bits(conn.nat, d)
            return CtResult(state, zone, conn.mark, conn.label, conn.orig, rewrite=rw)
        if p.kind == "tcp" and not tcp_valid_new(key[fk.TCP_FLAGS]):
            self._count("ct_invalid")
            return CtResult(TRK | INV, zone)
        ex = self._expected(p, now) if self._expect else None
        if ex is not None and not commit:
            m = ex.master
            return CtResult(TRK | NEW | REL, zone, m.mark, m.label, m.orig)
        if not commit:
            return CtResult(TRK | NEW, zone, 0, 0, p.tup)
        if self._full(zone):
            return self._refuse("ct_limit", zone)
        reply = _flip(p.tup)
        kind = ""
        if ex is not None:
            if nat is not None:  # it follows its master's translation (not the range)
                t, e = p.tup, ex.exp
                reply = (t[0], t[1], t[2], e.reply_src, e.reply_dst, t[6], t[5])
                kind = "dst" if e.reply_src != t[4] else "src" if e.reply_dst != t[3] else ""
            if self._live(reply, now) is not None:
                return self._refuse("ct_nat_clash", zone)
        elif nat is not None and nat.kind:
            if nat.version and nat.version != p.tup[1]:
                return self._refuse("ct_nat_family", zone)
            chosen = allocate(p.tup, reply, nat, self._taken(now), self._basis, self._rand)
            if chosen is None:
                return self._refuse("ct_nat_exhausted", zone)
            reply, kind = chosen, nat.kind
        elif self._live(reply, now) is not None:  # another connection's translation holds it
            return self._refuse("ct_nat_clash", zone)
        conn = self._create(p, frame, key, now, reply, kind)
        if alg == ftp.FTP_PORT and p.kind == "tcp":
            conn.helper = "ftp"
        state, rw, orig = TRK | NEW, None, conn.orig
        if ex is not None:  # Open vSwitch's related connection: the master's mark,
            m = ex.master  # label and original tuple, and no exec of its own
            conn.master, conn.mark, conn.label = m.orig, m.mark, m.label
            self._unexpect(ex.exp.key)
            self._note("ftp_related")
            state |= REL
            orig = m.orig
        else:
            _set_meta(conn, mark, label)
        if kind:
            rw = packet_rewrite(conn.orig, conn.reply, 0)
            state |= _nat_bits(kind, 0)
        return CtResult(state, zone, conn.mark, conn.label, orig, rewrite=rw)

    # -- the FTP helper ------------------------------------------------------------------
    def _ftp(
        self, conn: Conn, d: int, frame: bytes | bytearray, key: Any, xlate: bool, now: float
    ) -> tuple[ftp.Edit | None, bool]:
        """Read one segment of an FTP control connection travelling in direction `d`:
        set up the data connection it announces; when the packet is translated now
        (`xlate`), the address text to write and the sequence numbers to move.
        True as second value: a bad command (the packet is `inv`, counted)."""
        l3, l4 = key[fk.L3_OFS], key[fk.L4_OFS]
        start, end = ftp.payload_span(frame, l3, l4, conn.orig[1])
        text, bad = None, False
        if end > start:
            try:
                cmd = ftp.parse(bytes(frame[start : min(end, start + ftp.MAX_LINE)]), bool(d))
                if cmd is not None:
                    exp, addr = ftp.expect(cmd, conn.orig, conn.reply)
                    self._expect_from(conn, exp, now)
                    if xlate and addr is not None:
                        new = ftp.rewrite(cmd, addr)
                        a, b = cmd.span
                        if bytes(frame[start + a : start + b]) != new:
                            text = (a, b, new)
                            if conn.seqadj is None:
                                conn.seqadj = (ftp.SeqAdj(), ftp.SeqAdj())
                            (seq,) = struct.unpack_from("!I", frame, l4 + 4)
                            conn.seqadj[d].record(seq, len(new) - (b - a))
                            self._note("ftp_rewritten")
            except ftp.FtpError as err:
                self._note(err.reason)
                if isinstance(err, ftp.BadCommand):
                    self._count(err.reason)
                    bad = True
        adj = conn.seqadj
        if not xlate or adj is None:
            return None, bad
        this, other = adj[d], adj[1 - d]
        edit = ftp.Edit(
            ftp.SeqAdj(this.pos, this.before, this.after) if this.after or this.before else None,
            ftp.SeqAdj(other.pos, other.before, other.after)
            if other.after or other.before
            else None,
            text,
        )
        return (edit if edit != ftp.Edit() else None), bad

    def _expect_from(self, master: Conn, exp: ftp.Expectation, now: float) -> None:
        """`master` expects `exp` -- one at a time, as Linux's FTP helper: a newer
        command replaces what the master expected before."""
        if master.expecting is not None and master.expecting != exp.key:
            self._unexpect(master.expecting)
        self._expect[exp.key] = _Expected(exp, master, now + ftp.EXPECT_TIMEOUT)
        master.expecting = exp.key
        self._note("ftp_expected")

    def _expected(self, p: Packet, now: float) -> _Expected | None:
        """The expectation a new connection's first packet fulfils (any source port)."""
        t = p.tup
        if t[2] != 6:
            return None
        k = (t[0], t[1], t[2], t[3], t[4], t[6])
        e = self._expect.get(k)
        if e is not None and e.expires <= now:
            self._unexpect(k)
            return None
        return e

    def _unexpect(self, k: tuple[int, ...]) -> None:
        e = self._expect.pop(k, None)
        if e is not None and e.master.expecting == k:
            e.master.expecting = None

    def _refuse(self, reason: str, zone: int) -> CtResult:
        """A commit that cannot be made: the packet is dropped, counted by reason."""
        self._count(reason)
        return CtResult(TRK | NEW, zone, drop=reason)

    def _live(self, t: Tuple, now: float) -> tuple[Conn, int] | None:
        """The connection (and direction) holding tuple `t`; an expired one is removed."""
        hit = self._table.get(t)
        if hit is not None and hit[0].expires <= now:
            self._remove(hit[0])
            return None
        return hit

    def _taken(self, now: float) -> Callable[[Tuple], bool]:
        def taken(t: Tuple) -> bool:
            return self._live(t, now) is not None

        return taken

    def _by_orig(self, key: Any, t: Tuple, now: float) -> tuple[Conn, int] | None:
        """A packet translated by an earlier `ct` in this zone: its connection, by the
        original tuple the key carries, and the direction the packet travels (it
        looks like the original tuple or the mirror of the reply tuple one way,
        like the reply tuple or the mirror of the original the other)."""
        v = t[1]
        src, dst = (
            (key[fk.CT_NW_SRC], key[fk.CT_NW_DST])
            if v == 4
            else (key[fk.CT_IPV6_SRC], key[fk.CT_IPV6_DST])
        )
        o = (t[0], v, key[fk.CT_NW_PROTO], src, dst, key[fk.CT_TP_SRC], key[fk.CT_TP_DST])
        hit = self._live(o, now)
        if hit is None or hit[1]:
            return None
        conn = hit[0]
        if t in (conn.orig, _flip(conn.reply)):
            return conn, 0
        if t in (conn.reply, _flip(conn.orig)):
            return conn, 1
        return None

    def preview(
        self, key: tuple[int, ...] | list[int], zone: int, now: float, nat: NatRange, commit: bool
    ) -> tuple[Rewrite | None, int]:
        """What `ct` with `nat` would write into a packet of this flow key, and the
        NAT bits it would set -- changing nothing (for the trace, which has no
        frame: an ICMP echo is taken with identifier 0)."""
        et = key[fk.ETH_TYPE]
        if et not in (0x0800, 0x86DD) or key[fk.IP_FRAG]:
            return None, 0
        v = 4 if et == 0x0800 else 6
        src, dst = (
            (key[fk.IPV4_SRC], key[fk.IPV4_DST]) if v == 4 else (key[fk.IPV6_SRC], key[fk.IPV6_DST])
        )
        proto = key[fk.IP_PROTO]
        if proto in (6, 17, 132):
            t: Tuple = (zone, v, proto, src, dst, key[fk.TP_SRC], key[fk.TP_DST])
        elif key[fk.ICMP_TYPE] in (_ECHO4 if v == 4 else _ECHO6) and proto in (1, 58):
            t = (zone, v, proto, src, dst, 0, key[fk.ICMP_TYPE])
        else:
            return None, 0
        hit = self._table.get(t)
        if hit is not None and hit[0].expires > now:
            conn, d = hit
            if not conn.nat:
                return None, 0
            return packet_rewrite(conn.orig, conn.reply, d), _nat_bits(conn.nat, d)
        if not (commit and nat.kind) or (nat.version and nat.version != v):
            return None, 0

        def taken(c: Tuple) -> bool:
            h = self._table.get(c)
            return h is not None and h[0].expires > now

        rand = random.Random(self._basis)  # the tracker's own draws stay untouched
        reply = allocate(t, _flip(t), nat, taken, self._basis, rand)
        if reply is None:
            return None, 0
        return packet_rewrite(t, reply, 0), _nat_bits(nat.kind, 0)

    def _full(self, zone: int) -> bool:
        if self.limit and len(self) >= self.limit:
            return True
        zl = self.zone_limits.get(zone, 0)
        return bool(zl) and self._per_zone.get(zone, 0) >= zl

    def _create(
        self, p: Packet, frame: bytes | bytearray, key: Any, now: float, reply: Tuple, nat: str
    ) -> Conn:
        t = p.tup
        timeout = {"udp": "udp", "icmp": "icmp"}.get(p.kind, "tcp_syn_sent")
        conn = Conn(t, reply, now, now + self.timeouts[timeout], timeout, nat=nat)
        if p.kind == "tcp":
            conn.peers = tcp_new(frame, key)
            if not key[fk.TCP_FLAGS] & SYN:  # picked up mid-stream
                _retime(conn, "tcp_syn_recv", self.timeouts, now)
        conn.packets[0] = 1
        conn.nbytes[0] = len(frame)
        self._table[t] = (conn, 0)
        self._table[reply] = (conn, 1)
        self._per_zone[t[0]] = self._per_zone.get(t[0], 0) + 1
        self.committed += 1
        return conn


def _flip(t: Tuple) -> Tuple:
    """`t`'s mirror: the tuple of a packet going the other way (addresses and ports
    swapped; an ICMP echo keeps its identifier and takes the other type) -- an
    untranslated connection's reply tuple."""
    if t[2] in (1, 58):
        echo = _ECHO4 if t[1] == 4 else _ECHO6
        return (t[0], t[1], t[2], t[4], t[3], t[5], echo.get(t[6], t[6]))
    return (t[0], t[1], t[2], t[4], t[3], t[6], t[5])


def _nat_bits(kind: str, d: int) -> int:
    """ct_state of a translated packet, as Open vSwitch sets it: a source-NAT
    connection's original direction gets +snat and its replies +dnat (their
    destination is rewritten); the other way round for destination NAT."""
    return SNAT if (kind == "src") == (d == 0) else DNAT


def _set_meta(conn: Conn, mark: tuple[int, int] | None, label: tuple[int, int] | None) -> None:
    if mark is not None:
        conn.mark = (conn.mark & ~mark[1]) | (mark[0] & mark[1])
    if label is not None:
        conn.label = (conn.label & ~label[1]) | (label[0] & label[1])


def _retime(conn: Conn, name: str, timeouts: dict[str, float], now: float) -> None:
    conn.timeout = name
    conn.expires = now + timeouts[name]


def _state_name(conn: Conn) -> str:
    if conn.peers is None:
        return f"{conn.timeout.upper()}{'_REPLIED' if conn.replied else ''}"
    a, b = conn.peers
    return f"{TCP_STATE_NAMES[a.state]}/{TCP_STATE_NAMES[b.state]}"


# -- what a packet is, for the tracker ------------------------------------------------
def _classify(frame: bytes | bytearray | None, key: Any, zone: int) -> Packet | str:
    """The packet's tuple, or why it cannot be tracked (a drop-counter reason).
    No `frame`: a TCP or UDP packet's reading, its length known to be enough."""
    et = key[fk.ETH_TYPE]
    if et == 0x0800:
        v, src, dst = 4, key[fk.IPV4_SRC], key[fk.IPV4_DST]
    elif et == 0x86DD:
        v, src, dst = 6, key[fk.IPV6_SRC], key[fk.IPV6_DST]
    else:
        return "ct_not_ip"
    if key[fk.IP_FRAG]:
        return "ct_fragment"
    l4 = key[fk.L4_OFS]
    proto = key[fk.IP_PROTO]
    if key[fk.PARSE_ERROR] or not l4:
        return "ct_malformed"
    if proto == 6 or proto == 17 or proto == 132:
        if frame is not None and len(frame) < l4 + (20 if proto == 6 else 8):
            return "ct_malformed"
        kind = "tcp" if proto == 6 else "udp"
        return Packet((zone, v, proto, src, dst, key[fk.TP_SRC], key[fk.TP_DST]), kind, None)
    if frame is None:
        return "ct_protocol"
    if (v == 4 and proto == 1) or (v == 6 and proto == 58):
        if len(frame) < l4 + 8:
            return "ct_malformed"
        typ = key[fk.ICMP_TYPE]
        echo, errors = (_ECHO4, _ERR4) if v == 4 else (_ECHO6, _ERR6)
        if typ in echo:
            ident = (frame[l4 + 4] << 8) | frame[l4 + 5]
            return Packet((zone, v, proto, src, dst, ident, typ), "icmp", None)
        if typ in errors:
            inner = _quoted(frame, l4 + 8, v, zone)
            if inner is None:
                return "ct_malformed"
            return Packet((zone, v, proto, src, dst, 0, typ), "error", inner)
        return "ct_icmp_type"
    return "ct_protocol"


def _quoted(frame: bytes | bytearray, o: int, v: int, zone: int) -> Tuple | None:
    """The tuple an ICMP error quotes, inverted: the direction the error answers."""
    if v == 4:
        if len(frame) < o + 20:
            return None
        ihl = (frame[o] & 0x0F) * 4
        proto = frame[o + 9]
        src, dst = struct.unpack_from("!II", frame, o + 12)
        l4 = o + ihl
    else:
        if len(frame) < o + 40:
            return None
        proto = frame[o + 6]
        src = int.from_bytes(frame[o + 8 : o + 24], "big")
        dst = int.from_bytes(frame[o + 24 : o + 40], "big")
        l4 = o + 40
    if len(frame) < l4 + 8:
        return None
    if proto in (6, 17, 132):
        sport, dport = struct.unpack_from("!HH", frame, l4)
        return (zone, v, proto, dst, src, dport, sport)
    if proto in (1, 58):
        echo = _ECHO4 if v == 4 else _ECHO6
        typ = frame[l4]
        if typ not in echo:
            return None
        ident = (frame[l4 + 4] << 8) | frame[l4 + 5]
        return (zone, v, proto, dst, src, ident, echo[typ])
    return None


# -- per protocol ---------------------------------------------------------------------
def _update(
    conn: Conn,
    d: int,
    p: Packet,
    frame: bytes | bytearray,
    key: Any,
    timeouts: dict[str, float],
    now: float,
) -> str:
    """Advance `conn` by a packet travelling in direction `d`: valid | invalid | new."""
    if conn.peers is None:  # UDP, ICMP echo: a reply makes it a stream
        if d and p.kind == "udp":
            _retime(conn, "udp_stream", timeouts, now)
        elif conn.timeout == "udp_stream" or p.kind == "icmp":
            _retime(conn, conn.timeout, timeouts, now)
        else:
            _retime(conn, "udp", timeouts, now)
        return "valid"
    return tcp_update(conn, d, frame, key, timeouts, now)


# -- for people ---------------------------------------------------------------------
_PROTO = {6: "tcp", 17: "udp", 132: "sctp", 1: "icmp", 58: "icmpv6"}


def _tuple_text(t: Tuple) -> str:
    fmt = ip4_str if t[1] == 4 else ip6_str
    base = f"src={fmt(t[3])},dst={fmt(t[4])}"
    if t[2] in (1, 58):
        return f"{base},id={t[5]},type={t[6]},code=0"
    return f"{base},sport={t[5]},dport={t[6]}"


def format_conn(conn: Conn, now: float) -> str:
    """One line as `ovs-appctl dpctl/dump-conntrack` prints it."""
    o = conn.orig
    name = _PROTO.get(o[2], str(o[2])) + ("6" if o[1] == 6 and o[2] in (6, 17, 132) else "")
    parts = [name, f"orig=({_tuple_text(o)})", f"reply=({_tuple_text(conn.reply)})"]
    if conn.zone:
        parts.append(f"zone={conn.zone}")
    if conn.mark:
        parts.append(f"mark={conn.mark}")
    if conn.label:
        parts.append(f"labels=0x{conn.label:x}")
    parts.append(f"timeout={max(0, round(conn.expires - now))}")
    if conn.peers is not None:
        parts.append(f"protoinfo=(state={TCP_STATE_NAMES[conn.peers[0].state]})")
    if conn.helper:
        parts.append(f"helper={conn.helper}")
    return ",".join(parts)

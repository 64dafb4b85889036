"""Actions: one registry, and for each action its parse, format and execute.

Every action is a frozen dataclass (hashable, comparable: the reconciler diffs
flows by value) with:

    execute(x)  -- its effect on a translation context (`context.XContext`);
                   the datapath and the trace both run exactly this code;
    format()    -- ovs-ofctl syntax, accepted back by `parse` and by ovs-ofctl;
    parse       -- `PARSERS[name](argument)`, registered next to the class.

`check_consistency` is OpenFlow 1.3's OFPBAC_MATCH_INCONSISTENT as Open
vSwitch applies it to apply-actions: a field an action writes or reads must
have its prerequisites in the flow's match, as the actions before it leave
the match (a set_field changes the value later prerequisites see, push_vlan
makes a tag present, pop_vlan takes it away), and a TTL action needs an IP
EtherType.  Fields that share a slot (`tcp_dst`, `udp_dst`, `sctp_dst` in
`tp_dst`) pass when any of them would, unless the caller says which one the
controller named (an OXM set_field does).  Write-actions are an action set whose
order is not the packet's, so they are not checked, as in Open vSwitch.

`check_pkt_larger(N)->dst` (Open vSwitch's NXAST_CHECK_PKT_LARGER) writes 1
into the 1-bit `dst` when the packet is longer than N bytes, else 0; the
length is the frame's, Ethernet header included and VLAN tags not
(`context.packet_len`), as ovs-actions(7) says.  Its result depends on more
than the flow key, so the context records each comparison (`XContext.lengths`)
and a cached decision holds only for packets on the same side of each.

`conjunction(id,k/n)` makes its flow a clause of a conjunctive match (Open
vSwitch's): the classifier, not the action, gives it its meaning, and
`check_conjunctions` keeps such a flow to conjunctions and notes.

Reserved-port outputs (`normal`, `flood`, `all`, `in_port`, `local`,
`controller`) are `Output` with OpenFlow's reserved port numbers, as on the
wire; the `mod_*`/`set_tunnel`/`strip_vlan` spellings normalise to the
OpenFlow 1.3 action they mean, and print as Open vSwitch prints them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..packet import flowkey as fk
from ..packet.addr import ip4_int, ip6_int
from .context import XContext
from .fields import BY_INDEX, FIELDS, PORT_NAMES, PORT_NUMBERS, Field, FieldError, lookup
from .match import Match, PrereqError

__all__ = [
    "PARSERS",
    "Action",
    "ActionError",
    "CheckPktLarger",
    "Conjunction",
    "Controller",
    "Ct",
    "CtClear",
    "DecTtl",
    "Group",
    "MatchInconsistent",
    "Meter",
    "Nat",
    "Note",
    "Output",
    "PopVlan",
    "PushVlan",
    "RegLoad",
    "RegMove",
    "Resubmit",
    "SetField",
    "check_conjunctions",
    "check_consistency",
    "parse_action",
    "set_key",
    "split_args",
]

OFPP_IN_PORT = PORT_NAMES["IN_PORT"]
OFPP_TABLE = PORT_NAMES["TABLE"]
OFPP_NORMAL = PORT_NAMES["NORMAL"]
OFPP_FLOOD = PORT_NAMES["FLOOD"]
OFPP_ALL = PORT_NAMES["ALL"]
OFPP_CONTROLLER = PORT_NAMES["CONTROLLER"]
OFPP_LOCAL = PORT_NAMES["LOCAL"]
OFPP_MAX = 0xFFFFFF00

IN_PORT = fk.IN_PORT
VLAN_VID, VLAN_PCP = fk.VLAN_VID, fk.VLAN_PCP
CVLAN_VID, CVLAN_PCP = fk.CVLAN_VID, fk.CVLAN_PCP
ETH_TYPE, IP_TTL = fk.ETH_TYPE, fk.IP_TTL


class ActionError(ValueError):
    """An action that does not parse or cannot apply; names the action."""

    def __init__(self, action: str, message: str) -> None:
        self.action = action
        super().__init__(f"{action}: {message}")


class MatchInconsistent(ActionError):
    """An action the flow's match does not make meaningful (BAD_ACTION/MATCH_INCONSISTENT)."""


class Action:
    name: ClassVar[str] = "?"

    def execute(self, x: XContext) -> None:
        raise NotImplementedError

    def format(self) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.format()


def _num(text: str, what: str, bits: int = 32) -> int:
    try:
        v = int(text.strip(), 0)
    except ValueError:
        raise ActionError(what, f"invalid number {text!r}") from None
    if not 0 <= v < (1 << bits):
        raise ActionError(what, f"{v} does not fit in {bits} bits")
    return v


def split_args(text: str) -> list[str]:
    """Split on commas outside parentheses: `a,b(c,d),e` -> [a, b(c,d), e]."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ActionError(text, "unbalanced ')'")
        cur.append(ch)
    if depth:
        raise ActionError(text, "unbalanced '('")
    if cur or out:
        out.append("".join(cur).strip())
    return [t for t in out if t]


# -- output family ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Output(Action):
    name: ClassVar[str] = "output"
    port: int
    max_len: int = 0xFFFF

    def execute(self, x: XContext) -> None:
        p = self.port
        in_port = x.fields[IN_PORT]
        if p < OFPP_MAX:
            if p == in_port:
                x.note(f"skipping output to input port {p}")
                return
            x.emit(("output", p))
        elif p == OFPP_NORMAL:
            x.hooks.normal(x)
        elif p in (OFPP_FLOOD, OFPP_ALL):
            for q in x.hooks.flood_ports(in_port, p == OFPP_ALL):
                x.emit(("output", q))
        elif p == OFPP_IN_PORT:
            x.emit(("output", in_port))
        elif p == OFPP_CONTROLLER:
            # OpenFlow 1.3 §6.1.2: a packet sent by the table-miss flow (priority 0,
            # matching everything) is reported as a table miss, not as an action
            r = x.rules[-1] if x.rules else None
            miss = r is not None and r.priority == 0 and not r.flow.match.items
            reason = "no_match" if miss else "action"
            x.emit(("controller", reason, self.max_len, x.table_id, x.cookie))
        elif p == OFPP_LOCAL:
            if in_port == OFPP_LOCAL:
                x.note("skipping output to input port LOCAL")
                return
            x.emit(("output", OFPP_LOCAL))
        elif p == OFPP_TABLE:
            x.engine.resubmit(x, None, 0)
        else:
            x.note(f"output to port {p:#x} ignored")

    def format(self) -> str:
        p = self.port
        if p == OFPP_CONTROLLER:
            return f"CONTROLLER:{self.max_len}"
        if p >= OFPP_MAX:
            return PORT_NUMBERS.get(p, str(p))
        if self.max_len != 0xFFFF:
            return f"output(port={p},max_len={self.max_len})"
        return f"output:{p}"


@dataclass(frozen=True, slots=True)
class Controller(Action):
    """Nicira `controller(reason=...,max_len=...,id=...)`: packet-in with a reason."""

    name: ClassVar[str] = "controller"
    max_len: int = 0xFFFF
    reason: str = "action"
    controller_id: int = 0

    def execute(self, x: XContext) -> None:
        x.emit(("controller", self.reason, self.max_len, x.table_id, x.cookie))

    def format(self) -> str:
        parts = []
        if self.reason != "action":
            parts.append(f"reason={self.reason}")
        parts.append(f"max_len={self.max_len}")
        if self.controller_id:
            parts.append(f"id={self.controller_id}")
        return "controller(" + ",".join(parts) + ")"


# -- field writes -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetField(Action):
    name: ClassVar[str] = "set_field"
    slot: int
    value: int
    mask: int | None = None

    def execute(self, x: XContext) -> None:
        slot = self.slot
        value = self.value
        if slot == VLAN_VID:
            if not x.fields[VLAN_VID] & 0x1000:
                x.note("set_field on vlan_vid of an untagged packet: ignored")
                return
            value |= 0x1000
        elif slot == VLAN_PCP and not x.fields[VLAN_VID] & 0x1000:
            x.note("set_field on vlan_pcp of an untagged packet: ignored")
            return
        if self.mask is not None:
            value = (x.fields[slot] & ~self.mask) | (value & self.mask)
        x.set_field(slot, value)

    def format(self) -> str:
        f = BY_INDEX[self.slot]
        if f.kind == "vlan_vid":
            val = str(self.value | 0x1000)
        elif self.mask is not None:
            val = f"{self.value:#x}/{self.mask:#x}"
        else:
            val = f.format(self.value)
        return f"set_field:{val}->{f.ovs if f.kind != 'vlan_vid' else f.name}"


def _subfield(text: str, what: str) -> tuple[Field, int, int]:
    """`NXM_NX_REG0[0..15]`, `reg0[]`, `NXM_OF_ETH_SRC[5]` -> (field, offset, nbits)."""
    text = text.strip()
    name, br, rest = text.partition("[")
    try:
        f = lookup(name)
    except FieldError:
        raise ActionError(what, f"unknown field {name!r}") from None
    if f.index >= fk.KEY_LEN:
        raise ActionError(what, f"{f.name} can only be matched, no packet carries it")
    if not br:
        return f, 0, f.bits
    if not rest.endswith("]"):
        raise ActionError(what, f"missing ']' in {text!r}")
    spec = rest[:-1]
    if spec == "":
        return f, 0, f.bits
    lo_s, dots, hi_s = spec.partition("..")
    lo = _num(lo_s, what, 8)
    hi = _num(hi_s, what, 8) if dots else lo
    if hi < lo or hi >= f.bits:
        raise ActionError(what, f"bits [{spec}] out of range for {f.name} ({f.bits} bits)")
    return f, lo, hi - lo + 1


def _fmt_subfield(f: Field, ofs: int, nbits: int) -> str:
    name = f.nxm or f.name
    if ofs == 0 and nbits == f.bits:
        return f"{name}[]"
    if nbits == 1:
        return f"{name}[{ofs}]"
    return f"{name}[{ofs}..{ofs + nbits - 1}]"


def _write_bits(x: XContext, slot: int, ofs: int, nbits: int, bits: int) -> None:
    mask = ((1 << nbits) - 1) << ofs
    x.set_field(slot, (x.fields[slot] & ~mask) | (bits << ofs))


@dataclass(frozen=True, slots=True)
class RegLoad(Action):
    name: ClassVar[str] = "load"
    slot: int
    ofs: int
    nbits: int
    value: int

    def execute(self, x: XContext) -> None:
        _write_bits(x, self.slot, self.ofs, self.nbits, self.value)

    def format(self) -> str:
        return f"load:{self.value:#x}->{_fmt_subfield(BY_INDEX[self.slot], self.ofs, self.nbits)}"


@dataclass(frozen=True, slots=True)
class RegMove(Action):
    name: ClassVar[str] = "move"
    src: int
    src_ofs: int
    dst: int
    dst_ofs: int
    nbits: int

    def execute(self, x: XContext) -> None:
        bits = (x.fields[self.src] >> self.src_ofs) & ((1 << self.nbits) - 1)
        _write_bits(x, self.dst, self.dst_ofs, self.nbits, bits)

    def format(self) -> str:
        s = _fmt_subfield(BY_INDEX[self.src], self.src_ofs, self.nbits)
        d = _fmt_subfield(BY_INDEX[self.dst], self.dst_ofs, self.nbits)
        return f"move:{s}->{d}"


# -- VLAN, TTL ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushVlan(Action):
    name: ClassVar[str] = "push_vlan"
    tpid: int = 0x8100

    def execute(self, x: XContext) -> None:
        f = x.fields
        vid, pcp = f[VLAN_VID], f[VLAN_PCP]
        # OpenFlow 1.3: the new tag copies VID/PCP of the current outer tag, else zero
        tci = ((pcp << 13) | (vid & 0xFFF)) if vid & 0x1000 else 0
        f[CVLAN_VID], f[CVLAN_PCP] = vid, pcp
        f[VLAN_VID], f[VLAN_PCP] = (tci & 0xFFF) | 0x1000, tci >> 13
        x.emit(("push_vlan", self.tpid, tci))

    def format(self) -> str:
        return f"push_vlan:{self.tpid:#06x}"


@dataclass(frozen=True, slots=True)
class PopVlan(Action):
    name: ClassVar[str] = "pop_vlan"

    def execute(self, x: XContext) -> None:
        f = x.fields
        if not f[VLAN_VID] & 0x1000:
            x.note("pop_vlan on an untagged packet: ignored")
            return
        f[VLAN_VID], f[VLAN_PCP] = f[CVLAN_VID], f[CVLAN_PCP]
        f[CVLAN_VID] = f[CVLAN_PCP] = 0
        x.emit(("pop_vlan",))

    def format(self) -> str:
        return "pop_vlan"


@dataclass(frozen=True, slots=True)
class DecTtl(Action):
    name: ClassVar[str] = "dec_ttl"

    def execute(self, x: XContext) -> None:
        if x.fields[ETH_TYPE] not in (0x0800, 0x86DD):
            x.note("dec_ttl on a non-IP packet: ignored")
            return
        ttl = x.fields[IP_TTL]
        if ttl <= 1:
            x.halt("ttl_expired")
            return
        x.set_field(IP_TTL, ttl - 1)

    def format(self) -> str:
        return "dec_ttl"


@dataclass(frozen=True, slots=True)
class CheckPktLarger(Action):
    """`check_pkt_larger(pkt_len)->dst`: 1 into the 1-bit subfield `dst` when the
    packet is longer than `pkt_len` bytes (Ethernet header in, VLAN tags out), else 0."""

    name: ClassVar[str] = "check_pkt_larger"
    pkt_len: int
    slot: int
    ofs: int

    def execute(self, x: XContext) -> None:
        n = x.pkt_len
        larger = n is not None and n > self.pkt_len
        if n is None:
            x.note("check_pkt_larger: the packet's length is unknown, taken as not larger")
        else:
            x.lengths.append((self.pkt_len, larger))
        _write_bits(x, self.slot, self.ofs, 1, int(larger))

    def format(self) -> str:
        dst = _fmt_subfield(BY_INDEX[self.slot], self.ofs, 1)
        return f"check_pkt_larger({self.pkt_len})->{dst}"


# -- pipeline control ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Group(Action):
    name: ClassVar[str] = "group"
    group_id: int

    def execute(self, x: XContext) -> None:
        x.engine.run_group(x, self.group_id)

    def format(self) -> str:
        return f"group:{self.group_id}"


@dataclass(frozen=True, slots=True)
class Meter(Action):
    """OpenFlow 1.3 carries meters as an instruction; Open vSwitch writes `meter:N` first."""

    name: ClassVar[str] = "meter"
    meter_id: int

    def execute(self, x: XContext) -> None:
        x.emit(("meter", self.meter_id))

    def format(self) -> str:
        return f"meter:{self.meter_id}"


@dataclass(frozen=True, slots=True)
class Resubmit(Action):
    name: ClassVar[str] = "resubmit"
    port: int | None = None
    table: int | None = None

    def execute(self, x: XContext) -> None:
        x.engine.resubmit(x, self.port, self.table)

    def format(self) -> str:
        if self.table is None:
            return f"resubmit:{self.port}"
        port = "" if self.port is None else PORT_NUMBERS.get(self.port, str(self.port))
        return f"resubmit({port},{self.table})"


NAT_FLAGS = ("persistent", "hash", "random")


@dataclass(frozen=True, slots=True)
class Nat(Action):
    """`nat` inside `ct`: set up (src= or dst=, address and port ranges) or apply
    the translation of the packet's connection; as Open vSwitch spells it."""

    name: ClassVar[str] = "nat"
    kind: str = ""  # "" (apply an existing connection's translation), "src" or "dst"
    addr_min: str = ""
    addr_max: str = ""
    port_min: int = 0
    port_max: int = 0
    flags: tuple[str, ...] = ()  # persistent | hash | random

    def execute(self, x: XContext) -> None:  # only meaningful inside ct()
        x.note("nat outside ct(): ignored")

    def format(self) -> str:
        if not self.kind:
            return "nat" + (f"({','.join(self.flags)})" if self.flags else "")

        def addr(a: str) -> str:
            return f"[{a}]" if ":" in a else a

        rng = addr(self.addr_min) + (f"-{addr(self.addr_max)}" if self.addr_max else "")
        if self.port_min:
            rng += f":{self.port_min}" + (f"-{self.port_max}" if self.port_max else "")
        return f"nat({','.join((f'{self.kind}={rng}', *self.flags))})"


@dataclass(frozen=True, slots=True)
class Ct(Action):
    """Send the packet through the connection tracker (which lives in the datapath).

    Translation emits ("ct", action, fields, zone): the fields as they stand
    here (the registers and metadata the recirculated packet carries on) and
    the zone, read from its register if `zone_field` names one.  With `table`
    the pipeline forks, as Open vSwitch's does: this pass goes on untracked,
    and the tracked packet resumes at `table` with its ct fields set.
    """

    name: ClassVar[str] = "ct"
    commit: bool = False
    zone: int = 0
    table: int | None = None
    nat: Nat | None = None
    exec_: tuple[Action, ...] = field(default=())
    zone_field: tuple[int, int, int] | None = None  # (slot, offset, bits) the zone is read from
    alg: int = 0  # the helper, by its well-known port: 21 FTP, 69 TFTP
    force: bool = False

    def execute(self, x: XContext) -> None:
        zone = self.zone
        if self.zone_field is not None:
            slot, ofs, nbits = self.zone_field
            zone = (x.fields[slot] >> ofs) & ((1 << nbits) - 1)
        x.emit(("ct", self, tuple(x.fields), zone))
        if self.table is not None:
            x.note(f"conntrack (zone {zone}), then recirculate to table {self.table}")

    def format(self) -> str:
        parts = []
        if self.commit:
            parts.append("commit")
        if self.force:
            parts.append("force")
        if self.table is not None:
            parts.append(f"table={self.table}")
        if self.zone_field is not None:
            slot, ofs, nbits = self.zone_field
            parts.append(f"zone={_fmt_subfield(BY_INDEX[slot], ofs, nbits)}")
        elif self.zone:
            parts.append(f"zone={self.zone}")
        if self.exec_:
            parts.append("exec(" + ",".join(a.format() for a in self.exec_) + ")")
        if self.alg:
            name = _ALGS.get(self.alg)
            parts.append(f"alg={name}" if name else f"alg={self.alg}")
        if self.nat is not None:
            parts.append(self.nat.format())
        return "ct(" + ",".join(parts) + ")"


@dataclass(frozen=True, slots=True)
class CtClear(Action):
    """Forget the packet's connection-tracking state (ct_state and the rest become 0)."""

    name: ClassVar[str] = "ct_clear"

    def execute(self, x: XContext) -> None:
        for slot in range(fk.CT_SLOTS.start, fk.CT_SLOTS.stop):
            if x.fields[slot]:
                x.set_field(slot, 0)

    def format(self) -> str:
        return "ct_clear"


@dataclass(frozen=True, slots=True)
class Note(Action):
    name: ClassVar[str] = "note"
    data: bytes = b""

    def execute(self, x: XContext) -> None:
        x.note(f"note: {self.data.hex('.')}")

    def format(self) -> str:
        return "note:" + _note_padded(self.data).hex(".")


def _note_padded(data: bytes) -> bytes:
    """A note as it travels and as Open vSwitch keeps and prints it once decoded: after
    NXAST_NOTE's 10-byte header, zeros up to a multiple of 8 (6 bytes at the least)."""
    return data + bytes(-(len(data) + 10) % 8)


MAX_CLAUSES = 64


@dataclass(frozen=True, slots=True)
class Conjunction(Action):
    """Open vSwitch's `conjunction(id,k/n)` (NXAST_CONJUNCTION): the flow is clause
    `k` of the `n` dimensions of conjunctive match `id`.

    A flow whose actions are conjunctions (and notes) is never executed: the
    classifier counts it towards its conjunctions and, when every dimension of
    one has a matching clause at the same priority, finds the flow matching
    `conj_id=id` instead (`classifier`).  Executed anyway (a packet-out), it
    does nothing, as in Open vSwitch.
    """

    name: ClassVar[str] = "conjunction"
    conj_id: int
    clause: int  # k, 1-based as written; the wire carries k - 1
    n_clauses: int

    def __post_init__(self) -> None:
        what = self.format()
        if not 0 <= self.conj_id <= 0xFFFFFFFF:
            raise ActionError(what, "id must fit in 32 bits")
        if self.n_clauses < 2:
            raise ActionError(what, "conjunction must have at least 2 clauses")
        if self.n_clauses > MAX_CLAUSES:
            raise ActionError(what, f"conjunction must have at most {MAX_CLAUSES} clauses")
        if self.clause < 1:
            raise ActionError(what, "clause index must be positive")
        if self.clause > self.n_clauses:
            raise ActionError(what, "clause index must be less than or equal to number of clauses")

    def execute(self, x: XContext) -> None:
        x.note(f"{self.format()}: does nothing when executed (it is a clause, not an action)")

    def format(self) -> str:
        return f"conjunction({self.conj_id},{self.clause}/{self.n_clauses})"


def check_conjunctions(
    actions: Sequence[Action], others: Sequence[str] = ()
) -> tuple[Conjunction, ...]:
    """The conjunctions of a flow's apply-actions, () if it has none.

    As Open vSwitch (`ofpacts_verify`): a flow with a conjunction action has
    only conjunctions and notes.  ActionError names the first other action;
    `others` are the flow's other instructions in OpenFlow order (`meter` first,
    then those after apply-actions), which count as other actions too.
    """
    conj = tuple(a for a in actions if isinstance(a, Conjunction))
    if not conj:
        return ()
    before = [o for o in others if o.startswith("meter")]
    after = [o for o in others if not o.startswith("meter")]
    names = [*before, *(a.format() for a in actions if not isinstance(a, Conjunction | Note))]
    names += after
    if names:
        raise ActionError(
            conj[0].format(),
            '"conjunction" actions may be used along with "note" but not any other kind '
            f"of action (such as {names[0]!r} here)",
        )
    return conj


# -- parsers ---------------------------------------------------------------------------------


def _p_output(arg: str | None) -> Action:
    if arg is None:
        raise ActionError("output", "needs a port")
    if arg.startswith("(") or "=" in arg:
        kv = dict(p.split("=", 1) for p in split_args(arg.strip("()")) if "=" in p)
        if "port" not in kv:
            raise ActionError("output", "needs port=")
        return Output(_port(kv["port"], "output"), _num(kv.get("max_len", "65535"), "output", 16))
    return Output(_port(arg, "output"))


def _port(text: str, what: str) -> int:
    up = text.strip().upper()
    if up in PORT_NAMES:
        return PORT_NAMES[up]
    return _num(text, what)


def _p_controller(arg: str | None) -> Action:
    if arg is None:
        return Output(OFPP_CONTROLLER)
    if arg.startswith("("):
        kv = {}
        for p in split_args(arg[1:-1]):
            k, _, v = p.partition("=")
            kv[k.strip()] = v.strip()
        unknown = set(kv) - {"reason", "max_len", "id"}
        if unknown:
            raise ActionError("controller", f"unknown argument {sorted(unknown)[0]!r}")
        reason = kv.get("reason", "action")
        if reason not in ("action", "no_match", "invalid_ttl"):
            raise ActionError("controller", f"unknown reason {reason!r}")
        max_len = _num(kv.get("max_len", "65535"), "controller", 16)
        cid = _num(kv.get("id", "0"), "controller", 16)
        if reason == "action" and cid == 0:
            return Output(OFPP_CONTROLLER, max_len)
        return Controller(max_len, reason, cid)
    return Output(OFPP_CONTROLLER, _num(arg, "controller", 16))


def _p_set_field(arg: str | None) -> Action:
    if not arg or "->" not in arg:
        raise ActionError("set_field", "expected VALUE->FIELD")
    value_text, _, name = arg.rpartition("->")
    try:
        f = lookup(name.strip())
    except FieldError:
        raise ActionError("set_field", f"unknown field {name.strip()!r}") from None
    if not f.writable:
        raise ActionError("set_field", f"field {f.name} is read-only")
    try:
        value, mask = f.parse(value_text)
    except FieldError as e:
        raise ActionError("set_field", str(e)) from None
    if f.kind == "vlan_vid":
        value &= 0xFFF
        mask = f.full_mask
    return SetField(f.index, value, None if mask == f.full_mask else mask)


def _mod(field_name: str, what: str) -> Callable[[str | None], Action]:
    def parse(arg: str | None) -> Action:
        if arg is None:
            raise ActionError(what, "needs a value")
        f = lookup(field_name)
        try:
            value, _ = f.parse(arg)
        except FieldError as e:
            raise ActionError(what, str(e)) from None
        return SetField(f.index, value)

    return parse


def _p_mod_nw_tos(arg: str | None) -> Action:
    tos = _num(arg or "", "mod_nw_tos", 8)
    if tos & 3:
        raise ActionError("mod_nw_tos", "must be a multiple of 4 (the ECN bits are separate)")
    return SetField(fk.IP_DSCP, tos >> 2)


def _p_load(arg: str | None) -> Action:
    if not arg or "->" not in arg:
        raise ActionError("load", "expected VALUE->FIELD[bits]")
    value_text, _, dst = arg.partition("->")
    f, ofs, nbits = _subfield(dst, "load")
    if not f.writable:
        raise ActionError("load", f"field {f.name} is read-only")
    value = _num(value_text, "load", 128)
    if value >> nbits:
        raise ActionError("load", f"value {value:#x} does not fit in {nbits} bits")
    return RegLoad(f.index, ofs, nbits, value)


def _p_move(arg: str | None) -> Action:
    if not arg or "->" not in arg:
        raise ActionError("move", "expected SRC[bits]->DST[bits]")
    s, _, d = arg.partition("->")
    sf, sofs, sn = _subfield(s, "move")
    df, dofs, dn = _subfield(d, "move")
    if sn != dn:
        raise ActionError("move", f"source has {sn} bits but destination {dn}")
    if not df.writable:
        raise ActionError("move", f"field {df.name} is read-only")
    return RegMove(sf.index, sofs, df.index, dofs, sn)


def _p_check_pkt_larger(arg: str | None) -> Action:
    what = "check_pkt_larger"
    if not arg or not arg.startswith("(") or ")->" not in arg:
        raise ActionError(what, "expected check_pkt_larger(LENGTH)->FIELD[bit]")
    n_text, _, dst = arg[1:].partition(")->")
    n = _num(n_text, what, 16)
    f, ofs, nbits = _subfield(dst, what)
    if nbits != 1:
        raise ActionError(what, f"the destination must be 1 bit, not {nbits}")
    if not f.writable:
        raise ActionError(what, f"field {f.name} is read-only")
    return CheckPktLarger(n, f.index, ofs)


def _p_resubmit(arg: str | None) -> Action:
    if arg is None:
        raise ActionError("resubmit", "needs a port or (port,table)")
    if arg.startswith("("):
        port_s, _, table_s = arg[1:-1].partition(",")
        port = _port(port_s, "resubmit") if port_s.strip() else None
        table = _num(table_s, "resubmit", 8) if table_s.strip() else None
        if table is not None and table > 254:
            raise ActionError("resubmit", f"table {table} out of range 0..254")
        return Resubmit(port, table)
    return Resubmit(_port(arg, "resubmit"), None)


def _p_nat(arg: str | None) -> Nat:
    if arg is None:
        return Nat()
    parts = split_args(arg.strip()[1:-1] if arg.strip().startswith("(") else arg)
    kind = amin = amax = ""
    pmin = pmax = 0
    flags: list[str] = []
    for part in parts:
        part = part.strip()
        if part in NAT_FLAGS:
            if part in flags:
                raise ActionError("nat", f"{part} given twice")
            flags.append(part)
            continue
        k, eq, rng = part.partition("=")
        if k not in ("src", "dst") or not eq or kind:
            raise ActionError("nat", f"expected src=, dst= or {', '.join(NAT_FLAGS)}, got {part!r}")
        kind = k
        amin, amax, pmin, pmax = _nat_range(rng)
    if len(set(flags) & {"hash", "random"}) > 1:
        raise ActionError("nat", "hash and random exclude each other")
    if flags and not kind:
        raise ActionError("nat", f"{flags[0]} needs src= or dst=")
    return Nat(kind, amin, amax, pmin, pmax, tuple(sorted(flags, key=NAT_FLAGS.index)))


def _nat_range(rng: str) -> tuple[str, str, int, int]:
    """`10.0.0.1-10.0.0.9:1000-2000`, `[fd00::1]-[fd00::9]:80`: addresses, ports."""
    if rng.startswith("["):
        lo, _, rest = rng[1:].partition("]")
        hi = ""
        if rest.startswith("-["):
            hi, _, rest = rest[2:].partition("]")
        ports = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ActionError("nat", f"bad address range {rng!r}")
        six = True
    else:
        addrs, _, ports = rng.partition(":")
        lo, _, hi = addrs.partition("-")
        six = False
    for a in (lo, hi):
        if a:
            try:
                (ip6_int if six else ip4_int)(a)
            except ValueError:
                raise ActionError("nat", f"bad address {a!r}") from None
    pl, _, ph = ports.partition("-")
    port_min = _num(pl, "nat", 16) if pl else 0
    port_max = _num(ph, "nat", 16) if ph else 0
    if port_max and port_max < port_min:
        raise ActionError("nat", f"port range {ports!r} runs backwards")
    return lo, hi, port_min, port_max


def _p_ct(arg: str | None) -> Action:
    commit = force = False
    zone = alg = 0
    zone_field: tuple[int, int, int] | None = None
    table: int | None = None
    nat: Nat | None = None
    exec_: tuple[Action, ...] = ()
    for part in split_args((arg or "()")[1:-1]) if arg else []:
        name, eq, val = part.partition("=")
        name = name.strip()
        if part == "commit":
            commit = True
        elif part == "force":
            force = True
        elif name == "zone" and eq:
            if val.strip()[:1].isdigit():
                zone = _num(val, "ct", 16)
            else:
                f, ofs, nbits = _subfield(val, "ct")
                if nbits > 16:
                    raise ActionError("ct", f"zone {val!r}: a zone has 16 bits, not {nbits}")
                zone_field = (f.index, ofs, nbits)
        elif name == "table" and eq:
            table = _num(val, "ct", 8)
            if table > 254:
                raise ActionError("ct", f"table {table} out of range 0..254")
        elif name == "alg" and eq:
            alg = _ALG_PORTS.get(val.strip()) or _num(val, "ct", 16)
        elif part.startswith("nat"):
            nat = _p_nat(part[3:] or None)
        elif part.startswith("exec("):
            exec_ = tuple(parse_action(a) for a in split_args(part[5:-1]))
            for a in exec_:
                if not (isinstance(a, (SetField, RegLoad)) and a.slot in _CT_WRITABLE):
                    raise ActionError(
                        "ct", f"exec: only ct_mark and ct_label may be set, not {a.format()!r}"
                    )
        else:
            raise ActionError("ct", f"unknown argument {part!r}")
    return Ct(commit, zone, table, nat, exec_, zone_field, alg, force)


_CT_WRITABLE = frozenset((fk.CT_MARK, fk.CT_LABEL))
# ct(alg=NAME): the helpers Open vSwitch names, by the port they are known by
_ALGS = {21: "ftp", 69: "tftp"}
_ALG_PORTS = {name: port for port, name in _ALGS.items()}


def _p_note(arg: str | None) -> Action:
    try:
        data = bytes.fromhex((arg or "").replace(".", "").replace(":", ""))
    except ValueError:
        raise ActionError("note", f"invalid hex {arg!r}") from None
    return Note(_note_padded(data))  # the value a decoded note has


def _p_conjunction(arg: str | None) -> Action:
    syntax = '"conjunction" syntax is "conjunction(id,k/n)"'
    inner = (arg or "").strip()
    if not (inner.startswith("(") and inner.endswith(")")):
        raise ActionError("conjunction", syntax)
    id_text, comma, kn = inner[1:-1].partition(",")
    k_text, slash, n_text = kn.partition("/")
    if not comma or not slash:
        raise ActionError(f"conjunction{inner}", syntax)
    try:
        conj_id = int(id_text.strip(), 0)
        k, n = int(k_text.strip(), 10), int(n_text.strip(), 10)
    except ValueError:
        raise ActionError(f"conjunction{inner}", syntax) from None
    return Conjunction(conj_id, k, n)


def _fixed(action: Action) -> Callable[[str | None], Action]:
    def parse(arg: str | None) -> Action:
        if arg:
            raise ActionError(action.format(), "takes no argument")
        return action

    return parse


def _p_set_tunnel(arg: str | None) -> Action:
    return SetField(fk.TUN_ID, _num(arg or "", "set_tunnel", 64))


PARSERS: dict[str, Callable[[str | None], Action]] = {
    "output": _p_output,
    "controller": _p_controller,
    "normal": _fixed(Output(OFPP_NORMAL)),
    "flood": _fixed(Output(OFPP_FLOOD)),
    "all": _fixed(Output(OFPP_ALL)),
    "in_port": _fixed(Output(OFPP_IN_PORT)),
    "local": _fixed(Output(OFPP_LOCAL)),
    "set_field": _p_set_field,
    "load": _p_load,
    "move": _p_move,
    "push_vlan": lambda a: PushVlan(_num(a or "0x8100", "push_vlan", 16)),
    "pop_vlan": _fixed(PopVlan()),
    "strip_vlan": _fixed(PopVlan()),
    "dec_ttl": _fixed(DecTtl()),
    "group": lambda a: Group(_num(a or "", "group")),
    "meter": lambda a: Meter(_num(a or "", "meter")),
    "resubmit": _p_resubmit,
    "ct": _p_ct,
    "ct_clear": _fixed(CtClear()),
    "note": _p_note,
    "conjunction": _p_conjunction,
    "check_pkt_larger": _p_check_pkt_larger,
    "set_tunnel": _p_set_tunnel,
    "set_tunnel64": _p_set_tunnel,
    "mod_dl_src": _mod("eth_src", "mod_dl_src"),
    "mod_dl_dst": _mod("eth_dst", "mod_dl_dst"),
    "mod_nw_src": _mod("ipv4_src", "mod_nw_src"),
    "mod_nw_dst": _mod("ipv4_dst", "mod_nw_dst"),
    "mod_tp_src": _mod("tp_src", "mod_tp_src"),
    "mod_tp_dst": _mod("tp_dst", "mod_tp_dst"),
    "mod_nw_ttl": _mod("ip_ttl", "mod_nw_ttl"),
    "mod_nw_ecn": _mod("ip_ecn", "mod_nw_ecn"),
    "mod_vlan_pcp": _mod("vlan_pcp", "mod_vlan_pcp"),
    "mod_nw_tos": _p_mod_nw_tos,
}


def parse_action(text: str) -> Action:
    """One action in ovs-ofctl syntax (`output:2`, `resubmit(,3)`, `ct(commit)`, `2`)."""
    text = text.strip()
    if not text:
        raise ActionError(text, "empty action")
    if text.isdigit():
        return Output(_num(text, "output"))
    if text.upper() in PORT_NAMES and text.upper() not in ("ANY", "NONE", "TABLE"):
        return (
            PARSERS[text.lower()](None)
            if text.lower() in PARSERS
            else Output(PORT_NAMES[text.upper()])
        )
    cut = len(text)
    for sep in (":", "("):
        i = text.find(sep)
        if 0 <= i < cut:
            cut = i
    name = text[:cut].lower()
    arg: str | None
    if cut == len(text):
        arg = None
    elif text[cut] == ":":
        arg = text[cut + 1 :]
    else:
        arg = text[cut:]
        if name == "check_pkt_larger":  # `(N)->dst`: the parenthesis is not last
            return _p_check_pkt_larger(arg)
        if not arg.endswith(")"):
            raise ActionError(name, "missing ')'")
    parser = PARSERS.get(name)
    if parser is None:
        raise ActionError(name, "unknown action")
    if name == "output" and arg is not None and arg.startswith("("):
        arg = arg[1:-1]
    return parser(arg)


def set_key(a: Action) -> Any:
    """Slot of an action in an OpenFlow action set (write_actions keeps one per slot)."""
    if isinstance(a, SetField):
        return ("set", a.slot)
    if isinstance(a, RegLoad):
        return ("set", a.slot, a.ofs, a.nbits)
    if isinstance(a, PopVlan | PushVlan | DecTtl | Group | Output):
        return a.name
    raise ActionError(a.format(), "is not allowed in write_actions")


# OpenFlow 1.3 §5.10: the order an action set executes in
ACTION_SET_ORDER = {"pop_vlan": 0, "push_vlan": 1, "dec_ttl": 2, "set": 3, "group": 4, "output": 5}


# -- consistency with the match ---------------------------------------------------------

_BY_SLOT: dict[int, tuple[Field, ...]] = {}
for _f in FIELDS:
    _BY_SLOT[_f.index] = (*_BY_SLOT.get(_f.index, ()), _f)
_TAG_PRESENT = (fk.VLAN_VID, 0x1000, 0x1000)


def _need(m: Match, slot: int, a: Action, named: Field | None = None) -> None:
    """The field `named` (else some field living in `slot`) has its prerequisites in
    `m`, else MatchInconsistent."""
    first: PrereqError | None = None
    for f in (named,) if named is not None else _BY_SLOT[slot]:
        try:
            m.check_prereqs(f)
        except PrereqError as e:
            first = first or e
            continue
        if slot == fk.VLAN_VID and not _tagged(m):
            raise MatchInconsistent(a.format(), "vlan_vid: requires a VLAN tag in the match")
        return
    assert first is not None
    raise MatchInconsistent(a.format(), str(first))


def _tagged(m: Match) -> bool:
    return any(i == fk.VLAN_VID and v & mk & 0x1000 for i, v, mk in m.items)


def _with(m: Match, *items: tuple[int, int, int], drop: Iterable[int] = ()) -> Match:
    gone = {i for i, _, _ in items} | set(drop)
    return Match(tuple(sorted((*(it for it in m.items if it[0] not in gone), *items))))


def check_consistency(
    match: Match, actions: Sequence[Action], named: Sequence[Field | None] = ()
) -> None:
    """Raise MatchInconsistent for the first action (of an apply-actions list) that
    writes or reads a field its match, as the actions before leave it, does not
    make meaningful.  `named[i]`: the field action i was given by, if known."""
    m = match
    for n, a in enumerate(actions):
        if isinstance(a, SetField | RegLoad):
            _need(m, a.slot, a, named[n] if n < len(named) else None)
            f = BY_INDEX[a.slot]
            full = isinstance(a, SetField) and a.mask is None
            if full and f.kind != "vlan_vid":
                m = _with(m, (a.slot, a.value, f.full_mask))
        elif isinstance(a, RegMove):
            _need(m, a.src, a)
            _need(m, a.dst, a)
        elif isinstance(a, CheckPktLarger):
            _need(m, a.slot, a)
        elif isinstance(a, DecTtl):
            _need(m, IP_TTL, a)
        elif isinstance(a, PushVlan):
            m = _with(m, _TAG_PRESENT, drop=(fk.VLAN_PCP,))
        elif isinstance(a, PopVlan):
            # the tag underneath, if any, is not something the match says
            m = _with(m, drop=(fk.VLAN_VID, fk.VLAN_PCP))

"""Flows as text, in ovs-ofctl syntax: parse and print.

    table=0,priority=100,in_port=1,dl_vlan=10,actions=strip_vlan,output:2

What vnet prints, `ovs-ofctl parse-flows` accepts (a test holds us to it), and
what ovs-ofctl prints -- dump-flows output included, with its duration and
counters -- vnet parses.  Errors carry the offending token and its 1-based
column, so a person can find the mistake in a long line.

The printer follows Open vSwitch's conventions: protocol shorthands (`tcp`,
`udp6`, `arp` ...) instead of dl_type/nw_proto, `dl_vlan` for an exact VLAN,
DSCP as `nw_tos`, the default priority left out, `drop` for no actions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..packet import flowkey as fk
from .actions import (
    Action,
    ActionError,
    Conjunction,
    Meter,
    Note,
    parse_action,
    set_key,
    split_args,
)
from .fields import BY_INDEX, CONJ_ID, Field, FieldError, lookup
from .flow import (
    DEFAULT_PRIORITY,
    OFPFF_CHECK_OVERLAP,
    OFPFF_SEND_FLOW_REM,
    Flow,
    Instructions,
    Rule,
)
from .groups import Bucket, GroupDesc, GroupType
from .match import Match

__all__ = [
    "FlowSyntaxError",
    "ParsedFlow",
    "format_dump",
    "format_flow",
    "format_group",
    "format_instructions",
    "format_key",
    "format_match",
    "parse_flow",
    "parse_flows",
    "parse_group",
    "parse_instructions",
    "parse_match",
    "parse_packet",
]

SHORTHANDS: dict[str, tuple[int, int | None]] = {
    "ip": (0x0800, None),
    "ipv4": (0x0800, None),
    "icmp": (0x0800, 1),
    "tcp": (0x0800, 6),
    "udp": (0x0800, 17),
    "sctp": (0x0800, 132),
    "ipv6": (0x86DD, None),
    "icmp6": (0x86DD, 58),
    "tcp6": (0x86DD, 6),
    "udp6": (0x86DD, 17),
    "sctp6": (0x86DD, 132),
    "arp": (0x0806, None),
    "rarp": (0x8035, None),
}
_SHORT_BY_VALUE = {v: k for k, v in SHORTHANDS.items() if k not in ("ipv4",)}
_IGNORED = {
    "duration",
    "n_packets",
    "n_bytes",
    "idle_age",
    "hard_age",
    "importance",
    "reset_counts",
}
_FLAGS = {"send_flow_rem": OFPFF_SEND_FLOW_REM, "check_overlap": OFPFF_CHECK_OVERLAP}


class FlowSyntaxError(ValueError):
    """Bad flow text: `token` is the offending piece, `column` its 1-based position."""

    def __init__(self, message: str, token: str = "", column: int = 0, line: int = 0) -> None:
        self.message = message
        self.token = token
        self.column = column
        self.line = line
        where = f"line {line}, " if line else ""
        where += f"column {column}" if column else ""
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class ParsedFlow:
    flow: Flow
    cookie_mask: int = 0
    out_port: int = 0xFFFFFFFF
    out_group: int = 0xFFFFFFFF
    has_actions: bool = False


def _tokens(text: str, start: int = 0) -> Iterator[tuple[str, int]]:
    """Split on commas/blanks outside parentheses and brackets; yields (token, column)."""
    depth = 0
    cur: list[str] = []
    pos = start
    for i, ch in enumerate(text, start):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if depth == 0 and (ch == "," or ch.isspace()):
            if cur:
                yield "".join(cur), pos + 1
            cur = []
            pos = i + 1
            continue
        if not cur:
            pos = i
        cur.append(ch)
    if depth != 0:
        raise FlowSyntaxError("unbalanced parentheses", text.strip(), start + 1)
    if cur:
        yield "".join(cur), pos + 1


def _split_actions(text: str) -> tuple[str, str | None, int]:
    """(match part, actions part or None, column where the actions start)."""
    i = text.find("actions=")
    while i > 0 and text[i - 1] not in ", \t":
        i = text.find("actions=", i + 1)
    if i < 0:
        return text, None, 0
    return text[:i], text[i + 8 :], i + 8


# -- match -------------------------------------------------------------------------------------


def _match_pairs(tokens: list[tuple[str, str, int]]) -> list[tuple[Field, int, int]]:
    """Resolve (name, value, column) tokens to fields, applying OVS's spellings."""
    eth_type: int | None = None
    proto: int | None = None
    for name, value, col in tokens:
        if name in SHORTHANDS and value == "":
            eth_type, proto = SHORTHANDS[name]
        elif name in ("dl_type", "eth_type"):
            eth_type = _num(value, name, col)
        elif name in ("nw_proto", "ip_proto"):
            proto = _num(value, name, col)
    pairs: list[tuple[Field, int, int]] = []
    if eth_type is not None:
        pairs.append((lookup("eth_type"), eth_type, 0xFFFF))
    if proto is not None:
        pairs.append((lookup("ip_proto"), proto, 0xFF))
    has_vid = False
    want_vid_present = False
    for name, value, col in tokens:
        try:
            if name in SHORTHANDS and value == "":
                continue
            if name in ("dl_type", "eth_type", "nw_proto", "ip_proto"):
                continue
            if value == "":
                raise FlowSyntaxError(
                    f"{name!r} needs a value (or is not a known keyword)", name, col
                )
            if name == "dl_vlan":
                vid = _num(value, name, col)
                if vid == 0xFFFF:
                    pairs.append((lookup("vlan_vid"), 0, 0x1FFF))
                elif vid > 0xFFF:
                    raise FlowSyntaxError(f"dl_vlan {vid} out of range 0..4095", name, col)
                else:
                    pairs.append((lookup("vlan_vid"), vid | 0x1000, 0x1FFF))
                has_vid = True
                continue
            if name == "vlan_tci":
                v, _, m = value.partition("/")
                tci = _num(v, name, col)
                mask = _num(m, name, col) if m else 0xFFFF
                vm = mask & 0x1FFF
                if vm:
                    pairs.append((lookup("vlan_vid"), tci & vm, vm))
                    has_vid = True
                pm = mask >> 13
                if pm not in (0, 7):
                    raise FlowSyntaxError(
                        "vlan_tci: partial PCP masks are not supported", name, col
                    )
                if pm:
                    pairs.append((lookup("vlan_pcp"), tci >> 13, 7))
                continue
            if name in ("dl_vlan_pcp", "vlan_pcp"):
                pairs.append((lookup("vlan_pcp"), *lookup("vlan_pcp").parse(value)))
                want_vid_present = True
                continue
            if name == "nw_tos":
                tos = _num(value, name, col)
                if tos & 3 or tos > 0xFF:
                    raise FlowSyntaxError("nw_tos must be a multiple of 4 (DSCP << 2)", name, col)
                pairs.append((lookup("ip_dscp"), tos >> 2, 0x3F))
                continue
            f = lookup(name)
            if eth_type == 0x0806 and f.name in ("ipv4_src", "ipv4_dst"):
                f = lookup("arp_spa" if f.name == "ipv4_src" else "arp_tpa")
            if eth_type == 0x86DD and f.name in ("icmp_type", "icmp_code"):
                f = lookup("icmpv6_type" if f.name == "icmp_type" else "icmpv6_code")
            if f.kind == "vlan_vid":
                has_vid = True
            pairs.append((f, *f.parse(value)))
        except FieldError as e:
            raise FlowSyntaxError(str(e), f"{name}={value}", col) from None
    if want_vid_present and not has_vid:
        pairs.append((lookup("vlan_vid"), 0x1000, 0x1000))
    return pairs


def _num(text: str, name: str, col: int) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise FlowSyntaxError(f"{name}: invalid number {text!r}", f"{name}={text}", col) from None


def parse_match(text: str) -> Match:
    toks = [(*_kv(t), c) for t, c in _tokens(text)]
    return _build_match(toks)


def _kv(token: str) -> tuple[str, str]:
    name, eq, value = token.partition("=")
    return name.strip(), value.strip() if eq else ""


def _build_match(toks: list[tuple[str, str, int]]) -> Match:
    pairs = _match_pairs(toks)
    try:
        return Match.build(pairs)
    except FieldError as e:
        col = next((c for n, _v, c in toks if _same_field(n, e.field)), 0)
        tok = next((f"{n}={v}" for n, v, c in toks if c == col), e.field)
        raise FlowSyntaxError(str(e), tok, col) from None


def _same_field(name: str, field: str) -> bool:
    try:
        return lookup(name).name == field or name == field
    except FieldError:
        return name == field


# -- flows --------------------------------------------------------------------------------------


def parse_flow(text: str, *, origin: str = "", require_actions: bool = True) -> ParsedFlow:
    """One flow in add-flow (or dump-flows) syntax."""
    match_text, actions_text, acol = _split_actions(text)
    table, priority, cookie, cookie_mask = 0, DEFAULT_PRIORITY, 0, 0
    idle = hard = flags = 0
    out_port = out_group = 0xFFFFFFFF
    mtoks: list[tuple[str, str, int]] = []
    for tok, col in _tokens(match_text):
        name, value = _kv(tok)
        if name.endswith("s") and name[:-1] == "duration":
            continue
        try:
            if name == "table":
                table = _num(value, name, col)
                if table > 254:
                    raise FlowSyntaxError(f"table {table} out of range 0..254", tok, col)
            elif name == "priority":
                priority = _num(value, name, col)
                if priority > 0xFFFF:
                    raise FlowSyntaxError(f"priority {priority} out of range 0..65535", tok, col)
            elif name == "cookie":
                v, _, m = value.partition("/")
                cookie = _num(v, name, col)
                cookie_mask = _num(m, name, col) if m else 0
            elif name == "idle_timeout":
                idle = _num(value, name, col)
            elif name == "hard_timeout":
                hard = _num(value, name, col)
            elif name in _FLAGS and value == "":
                flags |= _FLAGS[name]
            elif name == "out_port":
                out_port = lookup("in_port").parse(value)[0]
            elif name == "out_group":
                out_group = _num(value, name, col)
            elif name in _IGNORED:
                continue
            else:
                mtoks.append((name, value, col))
        except FieldError as e:
            raise FlowSyntaxError(str(e), tok, col) from None
    match = _build_match(mtoks)
    if actions_text is None:
        if require_actions:
            raise FlowSyntaxError(
                "missing actions= (use actions=drop to drop)", text.strip()[:40], len(text) + 1
            )
        ins = Instructions()
    else:
        ins = parse_instructions(actions_text, column=acol)
    flow = Flow(match, ins, table, priority, cookie, idle, hard, flags, origin)
    return ParsedFlow(flow, cookie_mask, out_port, out_group, actions_text is not None)


_INSTR_ORDER = ("meter", "apply", "clear_actions", "write_actions", "write_metadata", "goto_table")


def parse_instructions(text: str, column: int = 0) -> Instructions:
    apply: list[Action] = []
    meter: int | None = None
    clear = False
    write: list[Action] = []
    metadata: tuple[int, int] | None = None
    goto: int | None = None
    stage = -1
    parsed: list[tuple[str, int, Action | None]] = []  # (token, column, apply action)
    toks = list(_tokens(text, column))
    if any(t.lower() == "drop" for t, _ in toks):
        if len(toks) > 1:
            t, c = next((t, c) for t, c in toks if t.lower() == "drop")
            raise FlowSyntaxError('"drop" must not be accompanied by any other action', t, c)
        return Instructions()
    for tok, col in toks:
        low = tok.lower()
        if low.startswith("meter:"):
            kind = "meter"
        elif low == "clear_actions":
            kind = "clear_actions"
        elif low.startswith("write_actions("):
            kind = "write_actions"
        elif low.startswith("write_metadata:"):
            kind = "write_metadata"
        elif low.startswith("goto_table:"):
            kind = "goto_table"
        else:
            kind = "apply"
        order = _INSTR_ORDER.index(kind)
        if order < stage or (order == stage and kind != "apply"):
            raise FlowSyntaxError(
                f"{kind} out of order: instructions go meter, actions, clear_actions, "
                "write_actions, write_metadata, goto_table",
                tok,
                col,
            )
        stage = order
        try:
            if kind == "meter":
                a = parse_action(tok)
                assert isinstance(a, Meter)
                meter = a.meter_id
            elif kind == "clear_actions":
                clear = True
            elif kind == "write_actions":
                inner = tok[len("write_actions(") : -1]
                seen = set()
                for sub in split_args(inner):
                    a = parse_action(sub)
                    k = set_key(a)
                    if k in seen:
                        raise FlowSyntaxError(
                            f"write_actions has two actions of kind {k!r}", sub, col
                        )
                    seen.add(k)
                    write.append(a)
            elif kind == "write_metadata":
                v, _, m = tok.split(":", 1)[1].partition("/")
                metadata = (
                    _num(v, "write_metadata", col),
                    _num(m, "write_metadata", col) if m else (1 << 64) - 1,
                )
            elif kind == "goto_table":
                goto = _num(tok.split(":", 1)[1], "goto_table", col)
                if goto > 254:
                    raise FlowSyntaxError(f"goto_table:{goto} out of range 0..254", tok, col)
            else:
                apply.append(parse_action(tok))
        except ActionError as e:
            raise FlowSyntaxError(str(e), tok, col) from None
        parsed.append((tok, col, apply[-1] if kind == "apply" else None))
    if any(isinstance(a, Conjunction) for a in apply):
        # as Open vSwitch: a clause of a conjunctive match has no other effect
        for tok, col, act in parsed:
            if not isinstance(act, Conjunction | Note):
                raise FlowSyntaxError(
                    '"conjunction" actions may be used along with "note" but not any '
                    f"other kind of action (such as {tok!r} here)",
                    tok,
                    col,
                )
    return Instructions(tuple(apply), meter, clear, tuple(write), metadata, goto)


def parse_flows(text: str, source: str = "<flows>") -> list[Flow]:
    """A flow file: one flow per line, `#` comments, blank lines ignored."""
    flows = []
    for n, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        try:
            flows.append(parse_flow(body, origin=f"{source}:{n}").flow)
        except FlowSyntaxError as e:
            raise FlowSyntaxError(e.message, e.token, e.column, n) from None
    return flows


def parse_flow_file(path: str | Path) -> list[Flow]:
    p = Path(path)
    return parse_flows(p.read_text(), p.name)


# -- printing -------------------------------------------------------------------------------------


def format_match(m: Match) -> str:
    items = {i: (v, mk) for i, v, mk in m.items}
    parts: list[str] = []
    for slot in (CONJ_ID, fk.CT_STATE, fk.CT_ZONE, fk.CT_MARK):
        if slot in items:
            parts.append(_fmt(slot, *items.pop(slot)))
    et = items.get(fk.ETH_TYPE)
    pr = items.get(fk.IP_PROTO)
    if et is not None:
        short = _SHORT_BY_VALUE.get((et[0], pr[0] if pr else None))
        if short is None and pr is not None:
            short = _SHORT_BY_VALUE.get((et[0], None))
            if short is not None:
                parts.append(short)
                items.pop(fk.ETH_TYPE)
        elif short is not None:
            parts.append(short)
            items.pop(fk.ETH_TYPE)
            if pr is not None:
                items.pop(fk.IP_PROTO)
    vid = items.pop(fk.VLAN_VID, None)
    pcp = items.pop(fk.VLAN_PCP, None)
    for slot in sorted(items):
        if slot == fk.ETH_DST:  # OVS prints in_port, vlan, then dl_src, dl_dst
            if vid is not None:
                parts.append(_fmt_vlan(*vid))
                vid = None
            if pcp is not None:
                parts.append(f"dl_vlan_pcp={pcp[0]}")
                pcp = None
        parts.append(_fmt(slot, *items[slot]))
    if vid is not None:
        parts.append(_fmt_vlan(*vid))
    if pcp is not None:
        parts.append(f"dl_vlan_pcp={pcp[0]}")
    return ",".join(parts)


def _fmt(slot: int, value: int, mask: int) -> str:
    f = BY_INDEX[slot]
    if slot == fk.IP_DSCP:
        return f"nw_tos={value << 2}"
    return f"{f.ovs}={f.format(value, mask)}"


def _fmt_vlan(value: int, mask: int) -> str:
    if mask == 0x1FFF:
        return f"dl_vlan={value & 0xFFF}" if value & 0x1000 else "vlan_tci=0x0000/0x1fff"
    return f"vlan_tci={value:#06x}/{mask:#06x}"


def format_instructions(ins: Instructions) -> str:
    parts: list[str] = []
    if ins.meter is not None:
        parts.append(f"meter:{ins.meter}")
    parts += [a.format() for a in ins.apply]
    if ins.clear:
        parts.append("clear_actions")
    if ins.write:
        parts.append("write_actions(" + ",".join(a.format() for a in ins.write) + ")")
    if ins.metadata is not None:
        v, m = ins.metadata
        parts.append(f"write_metadata:{v:#x}" + ("" if m == (1 << 64) - 1 else f"/{m:#x}"))
    if ins.goto is not None:
        parts.append(f"goto_table:{ins.goto}")
    return ",".join(parts) if parts else "drop"


def _head(flow: Flow) -> list[str]:
    parts = []
    if flow.idle_timeout:
        parts.append(f"idle_timeout={flow.idle_timeout}")
    if flow.hard_timeout:
        parts.append(f"hard_timeout={flow.hard_timeout}")
    if flow.flags & OFPFF_SEND_FLOW_REM:
        parts.append("send_flow_rem")
    if flow.flags & OFPFF_CHECK_OVERLAP:
        parts.append("check_overlap")
    return parts


def format_flow(flow: Flow) -> str:
    """add-flow syntax, accepted by `parse_flow` and by `ovs-ofctl add-flow`."""
    parts = [f"table={flow.table}"]
    if flow.cookie:
        parts.append(f"cookie={flow.cookie:#x}")
    parts += _head(flow)
    if flow.priority != DEFAULT_PRIORITY:
        parts.append(f"priority={flow.priority}")
    m = format_match(flow.match)
    if m:
        parts.append(m)
    parts.append("actions=" + format_instructions(flow.instructions))
    return ",".join(parts)


def format_dump(rule: Rule, now: float = 0.0) -> str:
    """A line of `dump-flows`, as `ovs-ofctl dump-flows` prints it."""
    fl = rule.flow
    head = [
        f"cookie={fl.cookie:#x}",
        f"duration={max(now - rule.created, 0.0):.3f}s",
        f"table={fl.table}",
        f"n_packets={rule.packet_count}",
        f"n_bytes={rule.byte_count}",
        *_head(fl),
    ]
    m = []
    if fl.priority != DEFAULT_PRIORITY:
        m.append(f"priority={fl.priority}")
    fm = format_match(fl.match)
    if fm:
        m.append(fm)
    match = ",".join(m)
    return (
        " "
        + ", ".join(head)
        + ", "
        + (match + " " if match else "")
        + "actions="
        + format_instructions(fl.instructions)
    )


# -- packets (for trace) ----------------------------------------------------------------------------


ECHO_REQUEST = {1: 8, 58: 128}  # ip_proto -> the echo request's type (ICMP, ICMPv6)


def parse_packet(text: str, defaults: Mapping[str, str] | None = None) -> tuple[int, ...]:
    """A packet described as exact field values (`in_port=1,tcp,nw_dst=10.0.0.1,tp_dst=80`).

    A field needs its protocol as in a flow's match (`tp_dst=80` without `tcp` is
    refused, not dropped).  `defaults` (name -> value, in the same syntax) fill in
    what the text leaves out, each only where the packet's protocol has that field
    (`nw_src` for IPv4, `ipv6_src` for IPv6), so a caller adds context without
    changing the text: error columns point into `text` as the person typed it.
    ICMP without a type is an echo request (ICMPv6: 128), as a `ping` sends.
    """
    toks = [(*_kv(t), c) for t, c in _tokens(text)]
    pairs = _match_pairs(toks)
    for f, _value, mask in pairs:
        if f.index >= fk.KEY_LEN:
            col = next((c for n, _v, c in toks if _same_field(n, f.name)), 0)
            raise FlowSyntaxError(
                f"{f.name}: not a packet field (set only while a conjunctive match is looked up)",
                f.name,
                col,
            )
        if mask != f.full_mask and not (f.kind == "vlan_vid" and mask == 0x1FFF):
            col = next((c for n, _v, c in toks if _same_field(n, f.name)), 0)
            raise FlowSyntaxError(f"{f.name}: a packet needs exact values, not masks", f.name, col)
    try:
        Match.build(pairs)
    except FieldError as e:
        col = next((c for n, _v, c in toks if _same_field(n, e.field)), 0)
        tok = next((f"{n}={v}" for n, v, c in toks if c == col), e.field)
        raise FlowSyntaxError(str(e), tok, col) from None
    given = {f.index for f, _v, _m in pairs}
    for name, text_value in (defaults or {}).items():
        try:
            extra = [p for p in _match_pairs([(name, text_value, 0)]) if p[0].index not in given]
            Match.build([*pairs, *extra])
        except (FlowSyntaxError, FieldError):
            continue  # not a field of this packet's protocol
        pairs += extra
        given |= {f.index for f, _v, _m in extra}
    key = [0] * fk.KEY_LEN
    for f, value, _mask in pairs:
        key[f.index] = value
    if key[fk.ETH_TYPE] in (0x0800, 0x86DD):
        if not key[fk.IP_TTL]:
            key[fk.IP_TTL] = 64
        if key[fk.IP_PROTO] in ECHO_REQUEST and fk.ICMP_TYPE not in given:
            key[fk.ICMP_TYPE] = ECHO_REQUEST[key[fk.IP_PROTO]]
    return tuple(key)


def format_key(key: tuple[int, ...] | list[int]) -> str:
    """A packet's fields in flow syntax, the protocol's relevant fields only."""
    items: list[tuple[Field, int, int]] = []
    et = key[fk.ETH_TYPE]
    proto = key[fk.IP_PROTO]
    show = {fk.IN_PORT, fk.ETH_SRC, fk.ETH_DST, fk.ETH_TYPE}
    show |= {i for i in range(fk.TUN_ID, fk.TUN_METADATA0 + 4) if key[i]}
    show |= {i for i in range(fk.CT_STATE, fk.KEY_LEN) if key[i]}
    if key[fk.METADATA]:
        show.add(fk.METADATA)
    if key[fk.VLAN_VID]:
        show |= {fk.VLAN_VID, fk.VLAN_PCP}
    if et == 0x0800:
        show |= {
            fk.IPV4_SRC,
            fk.IPV4_DST,
            fk.IP_PROTO,
            fk.IP_DSCP,
            fk.IP_ECN,
            fk.IP_TTL,
            fk.IP_FRAG,
        }
    elif et == 0x86DD:
        show |= {
            fk.IPV6_SRC,
            fk.IPV6_DST,
            fk.IPV6_LABEL,
            fk.IP_PROTO,
            fk.IP_DSCP,
            fk.IP_ECN,
            fk.IP_TTL,
            fk.IP_FRAG,
        }
    elif et == 0x0806:
        show |= {fk.ARP_OP, fk.ARP_SPA, fk.ARP_TPA, fk.ARP_SHA, fk.ARP_THA}
    if et in (0x0800, 0x86DD):
        if proto in (6, 17, 132):
            show |= {fk.TP_SRC, fk.TP_DST}
        if proto == 6:
            show.add(fk.TCP_FLAGS)
        if proto in (1, 58):
            show |= {fk.ICMP_TYPE, fk.ICMP_CODE}
        if proto == 58 and key[fk.ICMP_TYPE] in (135, 136):
            show |= {fk.ND_TARGET, fk.ND_SLL if key[fk.ICMP_TYPE] == 135 else fk.ND_TLL}
    for slot in sorted(show):
        f = BY_INDEX[slot]
        if slot == fk.ICMP_TYPE and et == 0x86DD:
            f = lookup("icmpv6_type")
        items.append((f, key[slot], f.full_mask))
    m = Match(
        tuple(
            sorted((f.index, v, mk) for f, v, mk in items if not (f.kind == "vlan_vid" and v == 0))
        )
    )
    text = format_match(m)
    if not key[fk.VLAN_VID]:
        text = text.replace("dl_src=", "vlan_tci=0x0000,dl_src=", 1) if "dl_src=" in text else text
    return text


# -- groups -----------------------------------------------------------------------------------------

_GROUP_TYPES = {
    "all": GroupType.ALL,
    "select": GroupType.SELECT,
    "indirect": GroupType.INDIRECT,
    "ff": GroupType.FAST_FAILOVER,
    "fast_failover": GroupType.FAST_FAILOVER,
}


def parse_group(text: str) -> GroupDesc:
    """`group_id=1,type=select,bucket=weight:2,actions=output:1,bucket=output:2` (add-group syntax)."""
    head, *bucket_texts = text.split("bucket=")
    gid: int | None = None
    gtype: GroupType | None = None
    for tok, col in _tokens(head):
        name, value = _kv(tok)
        if name == "group_id":
            gid = _num(value, name, col)
        elif name == "type":
            if value not in _GROUP_TYPES:
                raise FlowSyntaxError(f"type: expected one of {', '.join(_GROUP_TYPES)}", tok, col)
            gtype = _GROUP_TYPES[value]
        else:
            raise FlowSyntaxError(f"unknown group field {name!r}", tok, col)
    if gid is None:
        raise FlowSyntaxError("missing group_id=", text[:30], 1)
    if gtype is None:
        raise FlowSyntaxError("missing type=", text[:30], 1)
    buckets = []
    col = len(head)
    for bt in bucket_texts:
        col += len("bucket=")
        weight, watch_port, watch_group = 1, 0xFFFFFFFF, 0xFFFFFFFF
        acts: list[Action] = []
        in_actions = False
        for tok, c in _tokens(bt.rstrip(", "), col):
            if in_actions:
                acts.append(_action(tok, c))
                continue
            name, sep, value = (
                tok.partition(":") if ":" in tok and "=" not in tok.split(":")[0] else (tok, "", "")
            )
            if tok.startswith("actions="):
                in_actions = True
                rest = tok[len("actions=") :]
                if rest:
                    acts.append(_action(rest, c + 8))
            elif name in ("weight", "watch_port", "watch_group") and sep:
                v = (
                    lookup("in_port").parse(value)[0]
                    if name == "watch_port"
                    else _num(value, name, c)
                )
                if name == "weight":
                    weight = v
                elif name == "watch_port":
                    watch_port = v
                else:
                    watch_group = v
            else:
                in_actions = True
                acts.append(_action(tok, c))
        col += len(bt)
        buckets.append(Bucket(tuple(acts), weight, watch_port, watch_group))
    return GroupDesc(gid, gtype, tuple(buckets))


def _action(tok: str, col: int) -> Action:
    try:
        return parse_action(tok)
    except ActionError as e:
        raise FlowSyntaxError(str(e), tok, col) from None


def format_group(g: GroupDesc) -> str:
    parts = [f"group_id={g.group_id}", f"type={g.type.value}"]
    for b in g.buckets:
        bp = []
        if g.type == GroupType.SELECT and b.weight != 1:
            bp.append(f"weight:{b.weight}")
        if b.watch_port != 0xFFFFFFFF:
            bp.append(f"watch_port:{lookup('in_port').format(b.watch_port)}")
        if b.watch_group != 0xFFFFFFFF:
            bp.append(f"watch_group:{b.watch_group}")
        bp.append("actions=" + (",".join(a.format() for a in b.actions) or "drop"))
        parts.append("bucket=" + ",".join(bp))
    return ",".join(parts)

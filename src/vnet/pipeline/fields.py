"""The field registry: every matchable and writable field, by every name it goes by.

Each `Field` binds a name to a flow-key slot (`vnet.packet.flowkey`), its width,
how its values are written (MAC, dotted IPv4, IPv6, numbers, flag strings), its
OpenFlow prerequisites, and the NXM name `load`/`move` use.  OpenFlow (OXM)
names, the familiar Open vSwitch names and NXM names all resolve here, so the
parser, the printer, the trace and the OpenFlow codec agree by construction.

Several names may share a slot with different prerequisites (`tcp_dst`,
`udp_dst` and `tp_dst` all live in `tp_dst`): the name chosen decides what the
match must also say, as BAD_PREREQ does in OpenFlow.

`conj_id` is the one field that is not in the flow key: no packet carries it
(it reads 0), the classifier sets it only while it looks for the flow of a
conjunctive match it found (`classifier`), so its slot, `CONJ_ID`, lies past
the key's end and only a match uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..packet import flowkey as fk
from ..packet.addr import ip4_int, ip4_str, ip6_int, ip6_str, mac_int, mac_str
from ..packet.tcp import FLAG_NAMES as TCP_FLAG_NAMES

__all__ = [
    "BY_INDEX",
    "CONJ_ID",
    "CT_STATE_FLAGS",
    "FIELDS",
    "PORT_NAMES",
    "Field",
    "FieldError",
    "Prereq",
    "lookup",
]

ETH_IP = frozenset((0x0800, 0x86DD))
# Open vSwitch's conjunction id: a match-only slot just past the flow key (see above)
CONJ_ID = fk.KEY_LEN


class FieldError(ValueError):
    """A field name or value that does not parse; names the field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


@dataclass(frozen=True, slots=True)
class Prereq:
    field: str  # canonical name of the field that must be matched exactly
    values: frozenset[int]


PORT_NAMES = {
    "IN_PORT": 0xFFFFFFF8,
    "TABLE": 0xFFFFFFF9,
    "NORMAL": 0xFFFFFFFA,
    "FLOOD": 0xFFFFFFFB,
    "ALL": 0xFFFFFFFC,
    "CONTROLLER": 0xFFFFFFFD,
    "LOCAL": 0xFFFFFFFE,
    "ANY": 0xFFFFFFFF,
    "NONE": 0xFFFFFFFF,
}
PORT_NUMBERS = {v: k for k, v in PORT_NAMES.items() if k != "NONE"}

CT_STATE_FLAGS = {
    "new": 0x01,
    "est": 0x02,
    "rel": 0x04,
    "rpl": 0x08,
    "inv": 0x10,
    "trk": 0x20,
    "snat": 0x40,
    "dnat": 0x80,
}

FRAG_VALUES = {
    "no": (0, 1),
    "yes": (1, 1),
    "first": (1, 3),
    "later": (3, 3),
    "not_later": (0, 2),
}


def _int(text: str, field: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise FieldError(field, f"invalid number {text!r}") from None


@dataclass(frozen=True, slots=True)
class Field:
    name: str  # canonical (OXM style) name
    index: int  # slot in the flow key
    bits: int
    kind: str  # int | hex | mac | ipv4 | ipv6 | port | ct_state | tcp_flags | frag | vlan_vid
    ovs: str  # the name Open vSwitch prints
    aliases: tuple[str, ...] = ()
    prereqs: tuple[Prereq, ...] = ()
    maskable: bool = True
    writable: bool = True
    nxm: str | None = None

    @property
    def full_mask(self) -> int:
        return (1 << self.bits) - 1

    # -- values ---------------------------------------------------------------
    def parse(self, text: str) -> tuple[int, int]:
        """Parse `value[/mask]` into (value, mask); FieldError names the field."""
        text = text.strip()
        if not text:
            raise FieldError(self.name, "missing value")
        k = self.kind
        if k == "ct_state":
            return _parse_flags(text, CT_STATE_FLAGS, self)
        if k == "tcp_flags" and text[0] in "+-":
            return _parse_flags(text, TCP_FLAG_NAMES, self)
        if k == "frag":
            if text not in FRAG_VALUES:
                raise FieldError(
                    self.name, f"expected one of {', '.join(FRAG_VALUES)}, got {text!r}"
                )
            return FRAG_VALUES[text]
        value_text, _, mask_text = text.partition("/")
        if k == "mac":
            try:
                value = mac_int(value_text)
                mask = mac_int(mask_text) if mask_text else self.full_mask
            except ValueError as e:
                raise FieldError(self.name, str(e)) from None
        elif k in ("ipv4", "ipv6"):
            conv = ip4_int if k == "ipv4" else ip6_int
            try:
                value = conv(value_text)
                if not mask_text:
                    mask = self.full_mask
                elif mask_text.isdigit():
                    plen = int(mask_text)
                    if plen > self.bits:
                        raise FieldError(self.name, f"prefix length {plen} exceeds {self.bits}")
                    mask = (self.full_mask << (self.bits - plen)) & self.full_mask
                else:
                    mask = conv(mask_text)
            except ValueError as e:
                raise FieldError(self.name, str(e)) from None
        elif k == "port":
            if mask_text:
                raise FieldError(self.name, "is not maskable")
            value = PORT_NAMES.get(value_text.upper(), -1)
            if value < 0:
                value = _int(value_text, self.name)
            mask = self.full_mask
        else:
            value = _int(value_text, self.name)
            mask = _int(mask_text, self.name) if mask_text else self.full_mask
        if mask_text and not self.maskable:
            raise FieldError(self.name, "is not maskable")
        if value < 0 or value > self.full_mask or mask < 0 or mask > self.full_mask:
            raise FieldError(self.name, f"value {text!r} does not fit in {self.bits} bits")
        if value & ~mask:
            # OpenFlow: value bits outside the mask are an error (BAD_WILDCARDS)
            raise FieldError(self.name, f"value {text!r} has bits set outside its mask")
        return value, mask

    def format(self, value: int, mask: int | None = None) -> str:
        full = mask is None or mask == self.full_mask
        k = self.kind
        if k == "ct_state":
            m = self.full_mask if mask is None else mask
            return "".join(
                ("+" if value & bit else "-") + name
                for name, bit in CT_STATE_FLAGS.items()
                if m & bit
            )
        if k == "frag":
            for name, (v, m2) in FRAG_VALUES.items():
                if (v, m2) == (value, mask if mask is not None else 3):
                    return name
            return "yes" if value else "no"
        if k == "tcp_flags" and not full:
            assert mask is not None
            return "".join(
                ("+" if value & bit else "-") + name
                for name, bit in TCP_FLAG_NAMES.items()
                if mask & bit
            )
        if k == "mac":
            return mac_str(value) if full else f"{mac_str(value)}/{mac_str(mask or 0)}"
        if k in ("ipv4", "ipv6"):
            conv = ip4_str if k == "ipv4" else ip6_str
            if full:
                return conv(value)
            assert mask is not None
            inv = ~mask & self.full_mask
            if inv & (inv + 1) == 0:  # contiguous prefix
                return f"{conv(value)}/{self.bits - inv.bit_length()}"
            return f"{conv(value)}/{conv(mask)}"
        if k == "port":
            return PORT_NUMBERS.get(value, str(value))
        if k == "hex" or not full:
            if full:
                return f"{value:#x}"
            return f"{value:#x}/{mask:#x}"
        return str(value)

    def format_value(self, value: int) -> str:
        """A value as the trace shows it (no mask)."""
        if self.kind in ("mac", "ipv4", "ipv6", "port"):
            return self.format(value)
        if self.kind == "ct_state":
            names = [n for n, b in CT_STATE_FLAGS.items() if value & b]
            return "+".join(names) if names else "0"
        if self.kind == "vlan_vid":
            return f"{value & 0xFFF}" if value & 0x1000 else "(none)"
        return self.format(value)


def _parse_flags(text: str, names: dict[str, int], f: Field) -> tuple[int, int]:
    if text[0] not in "+-":
        v = _int(text.partition("/")[0], f.name)
        m = _int(text.partition("/")[2], f.name) if "/" in text else f.full_mask
        return v, m
    value = mask = 0
    i = 0
    while i < len(text):
        sign = text[i]
        if sign not in "+-":
            raise FieldError(f.name, f"expected '+' or '-' at {text[i:]!r}")
        j = i + 1
        while j < len(text) and text[j] not in "+-":
            j += 1
        name = text[i + 1 : j]
        bit = names.get(name)
        if bit is None:
            raise FieldError(f.name, f"unknown flag {name!r} (known: {', '.join(names)})")
        mask |= bit
        if sign == "+":
            value |= bit
        i = j
    return value, mask


def _pr(field: str, *values: int) -> Prereq:
    return Prereq(field, frozenset(values))


_IP = _pr("eth_type", 0x0800, 0x86DD)
_IP4 = _pr("eth_type", 0x0800)
_IP6 = _pr("eth_type", 0x86DD)
_ARP = _pr("eth_type", 0x0806)


def _f(name: str, bits: int, kind: str, ovs: str | None = None, **kw: object) -> Field:
    slot = kw.pop("slot", name)
    assert isinstance(slot, str)
    return Field(name, fk.INDEX[slot], bits, kind, ovs or name, **kw)  # type: ignore[arg-type]


FIELDS: tuple[Field, ...] = (
    _f("in_port", 32, "port", maskable=False, nxm="NXM_OF_IN_PORT"),
    _f("metadata", 64, "hex", nxm="OXM_OF_METADATA"),
    _f("tun_id", 64, "hex", aliases=("tunnel_id",), nxm="NXM_NX_TUN_ID"),
    _f("tun_src", 32, "ipv4", nxm="NXM_NX_TUN_IPV4_SRC"),
    _f("tun_dst", 32, "ipv4", nxm="NXM_NX_TUN_IPV4_DST"),
    _f("tun_ipv6_src", 128, "ipv6", nxm="NXM_NX_TUN_IPV6_SRC"),
    _f("tun_ipv6_dst", 128, "ipv6", nxm="NXM_NX_TUN_IPV6_DST"),
    # the Geneve options vnet maps (geneve.TLV_MAP_DEFAULT): 4 bytes of data each
    *(_f(f"tun_metadata{i}", 32, "hex", nxm=f"NXM_NX_TUN_METADATA{i}") for i in range(4)),
    _f("eth_dst", 48, "mac", "dl_dst", aliases=("dl_dst",), nxm="NXM_OF_ETH_DST"),
    _f("eth_src", 48, "mac", "dl_src", aliases=("dl_src",), nxm="NXM_OF_ETH_SRC"),
    _f(
        "eth_type",
        16,
        "hex",
        "dl_type",
        aliases=("dl_type",),
        maskable=False,
        writable=False,
        nxm="NXM_OF_ETH_TYPE",
    ),
    _f("vlan_vid", 13, "vlan_vid", nxm="OXM_OF_VLAN_VID"),
    _f(
        "vlan_pcp",
        3,
        "int",
        "dl_vlan_pcp",
        aliases=("dl_vlan_pcp",),
        maskable=False,
        prereqs=(_pr("vlan_vid", *range(0x1000, 0x2000)),),
        nxm="OXM_OF_VLAN_PCP",
    ),
    _f("cvlan_vid", 13, "vlan_vid", writable=False),
    _f("cvlan_pcp", 3, "int", maskable=False, writable=False),
    _f(
        "ipv4_src",
        32,
        "ipv4",
        "nw_src",
        aliases=("nw_src", "ip_src"),
        prereqs=(_IP4,),
        nxm="NXM_OF_IP_SRC",
    ),
    _f(
        "ipv4_dst",
        32,
        "ipv4",
        "nw_dst",
        aliases=("nw_dst", "ip_dst"),
        prereqs=(_IP4,),
        nxm="NXM_OF_IP_DST",
    ),
    _f("ipv6_src", 128, "ipv6", prereqs=(_IP6,), nxm="NXM_NX_IPV6_SRC"),
    _f("ipv6_dst", 128, "ipv6", prereqs=(_IP6,), nxm="NXM_NX_IPV6_DST"),
    _f("ipv6_label", 20, "hex", prereqs=(_IP6,), nxm="NXM_NX_IPV6_LABEL"),
    _f(
        "ip_proto",
        8,
        "int",
        "nw_proto",
        aliases=("nw_proto",),
        maskable=False,
        writable=False,
        prereqs=(_IP,),
        nxm="NXM_OF_IP_PROTO",
    ),
    _f("ip_dscp", 6, "int", maskable=False, prereqs=(_IP,), nxm="OXM_OF_IP_DSCP"),
    _f(
        "ip_ecn",
        2,
        "int",
        "nw_ecn",
        aliases=("nw_ecn",),
        maskable=False,
        prereqs=(_IP,),
        nxm="NXM_NX_IP_ECN",
    ),
    _f(
        "ip_ttl",
        8,
        "int",
        "nw_ttl",
        aliases=("nw_ttl",),
        maskable=False,
        prereqs=(_IP,),
        nxm="NXM_NX_IP_TTL",
    ),
    _f(
        "ip_frag",
        2,
        "frag",
        "nw_frag",
        aliases=("nw_frag",),
        writable=False,
        prereqs=(_IP,),
        nxm="NXM_NX_IP_FRAG",
    ),
    _f("tp_src", 16, "int", prereqs=(_IP, _pr("ip_proto", 6, 17, 132)), nxm="NXM_OF_TCP_SRC"),
    _f("tp_dst", 16, "int", prereqs=(_IP, _pr("ip_proto", 6, 17, 132)), nxm="NXM_OF_TCP_DST"),
    _f(
        "tcp_src",
        16,
        "int",
        "tp_src",
        slot="tp_src",
        prereqs=(_IP, _pr("ip_proto", 6)),
        nxm="NXM_OF_TCP_SRC",
    ),
    _f(
        "tcp_dst",
        16,
        "int",
        "tp_dst",
        slot="tp_dst",
        prereqs=(_IP, _pr("ip_proto", 6)),
        nxm="NXM_OF_TCP_DST",
    ),
    _f(
        "udp_src",
        16,
        "int",
        "tp_src",
        slot="tp_src",
        prereqs=(_IP, _pr("ip_proto", 17)),
        nxm="NXM_OF_UDP_SRC",
    ),
    _f(
        "udp_dst",
        16,
        "int",
        "tp_dst",
        slot="tp_dst",
        prereqs=(_IP, _pr("ip_proto", 17)),
        nxm="NXM_OF_UDP_DST",
    ),
    _f("sctp_src", 16, "int", "tp_src", slot="tp_src", prereqs=(_IP, _pr("ip_proto", 132))),
    _f("sctp_dst", 16, "int", "tp_dst", slot="tp_dst", prereqs=(_IP, _pr("ip_proto", 132))),
    _f(
        "tcp_flags",
        12,
        "tcp_flags",
        writable=False,
        prereqs=(_IP, _pr("ip_proto", 6)),
        nxm="NXM_NX_TCP_FLAGS",
    ),
    _f(
        "icmp_type",
        8,
        "int",
        maskable=False,
        slot="icmp_type",
        aliases=("icmpv4_type",),
        prereqs=(_IP4, _pr("ip_proto", 1)),
        nxm="NXM_OF_ICMP_TYPE",
    ),
    _f(
        "icmp_code",
        8,
        "int",
        maskable=False,
        slot="icmp_code",
        aliases=("icmpv4_code",),
        prereqs=(_IP4, _pr("ip_proto", 1)),
        nxm="NXM_OF_ICMP_CODE",
    ),
    _f(
        "icmpv6_type",
        8,
        "int",
        "icmp_type",
        maskable=False,
        slot="icmp_type",
        prereqs=(_IP6, _pr("ip_proto", 58)),
        nxm="NXM_NX_ICMPV6_TYPE",
    ),
    _f(
        "icmpv6_code",
        8,
        "int",
        "icmp_code",
        maskable=False,
        slot="icmp_code",
        prereqs=(_IP6, _pr("ip_proto", 58)),
        nxm="NXM_NX_ICMPV6_CODE",
    ),
    _f("arp_op", 16, "int", maskable=False, prereqs=(_ARP,), nxm="NXM_OF_ARP_OP"),
    _f("arp_spa", 32, "ipv4", prereqs=(_ARP,), nxm="NXM_OF_ARP_SPA"),
    _f("arp_tpa", 32, "ipv4", prereqs=(_ARP,), nxm="NXM_OF_ARP_TPA"),
    _f("arp_sha", 48, "mac", prereqs=(_ARP,), nxm="NXM_NX_ARP_SHA"),
    _f("arp_tha", 48, "mac", prereqs=(_ARP,), nxm="NXM_NX_ARP_THA"),
    _f(
        "nd_target",
        128,
        "ipv6",
        prereqs=(_IP6, _pr("ip_proto", 58), _pr("icmp_type", 135, 136)),
        nxm="NXM_NX_ND_TARGET",
    ),
    _f(
        "nd_sll",
        48,
        "mac",
        prereqs=(_IP6, _pr("ip_proto", 58), _pr("icmp_type", 135)),
        nxm="NXM_NX_ND_SLL",
    ),
    _f(
        "nd_tll",
        48,
        "mac",
        prereqs=(_IP6, _pr("ip_proto", 58), _pr("icmp_type", 136)),
        nxm="NXM_NX_ND_TLL",
    ),
    # Open vSwitch's ND extensions (ERICOXM class 0x1000, since OVS 2.11): with them a
    # switch turns a neighbour solicitation into an advertisement by itself
    _f(
        "nd_reserved",
        32,
        "int",
        maskable=False,
        prereqs=(_IP6, _pr("ip_proto", 58), _pr("icmp_type", 135, 136)),
        nxm="ERICOXM_OF_ICMPV6_ND_RESERVED",
    ),
    _f(
        "nd_options_type",
        8,
        "int",
        maskable=False,
        prereqs=(_IP6, _pr("ip_proto", 58), _pr("icmp_type", 135, 136)),
        nxm="ERICOXM_OF_ICMPV6_ND_OPTIONS_TYPE",
    ),
    _f("ct_state", 8, "ct_state", writable=False, nxm="NXM_NX_CT_STATE"),
    _f("ct_zone", 16, "int", maskable=False, writable=False, nxm="NXM_NX_CT_ZONE"),
    _f("ct_mark", 32, "hex", nxm="NXM_NX_CT_MARK"),
    _f("ct_label", 128, "hex", nxm="NXM_NX_CT_LABEL"),
    # the connection's original-direction tuple (read only)
    _f("ct_nw_src", 32, "ipv4", prereqs=(_IP4,), writable=False, nxm="NXM_NX_CT_NW_SRC"),
    _f("ct_nw_dst", 32, "ipv4", prereqs=(_IP4,), writable=False, nxm="NXM_NX_CT_NW_DST"),
    _f("ct_ipv6_src", 128, "ipv6", prereqs=(_IP6,), writable=False, nxm="NXM_NX_CT_IPV6_SRC"),
    _f("ct_ipv6_dst", 128, "ipv6", prereqs=(_IP6,), writable=False, nxm="NXM_NX_CT_IPV6_DST"),
    _f("ct_nw_proto", 8, "int", maskable=False, writable=False, nxm="NXM_NX_CT_NW_PROTO"),
    _f("ct_tp_src", 16, "int", writable=False, nxm="NXM_NX_CT_TP_SRC"),
    _f("ct_tp_dst", 16, "int", writable=False, nxm="NXM_NX_CT_TP_DST"),
    *(_f(f"reg{i}", 32, "hex", nxm=f"NXM_NX_REG{i}") for i in range(16)),
    Field(
        "conj_id",
        CONJ_ID,
        32,
        "int",
        "conj_id",
        maskable=False,
        writable=False,
        nxm="NXM_NX_CONJ_ID",
    ),
)

_BY_NAME: dict[str, Field] = {}
for _fld in FIELDS:
    for _n in (_fld.name, *_fld.aliases):
        _BY_NAME.setdefault(_n, _fld)
    if _fld.nxm:
        _BY_NAME.setdefault(_fld.nxm, _fld)
        _BY_NAME.setdefault(_fld.nxm.lower(), _fld)
# the first field registered for a slot speaks for it (tp_src over tcp_src ...)
BY_INDEX: dict[int, Field] = {}
for _fld in FIELDS:
    BY_INDEX.setdefault(_fld.index, _fld)
_pr_names = {p.field for f in FIELDS for p in f.prereqs}
assert all(n in _BY_NAME for n in _pr_names)


def lookup(name: str) -> Field:
    """The field called `name` (any of its names); FieldError if there is none."""
    f = _BY_NAME.get(name)
    if f is None:
        f = _BY_NAME.get(name.lower())
    if f is None:
        raise FieldError(name, "unknown field")
    return f

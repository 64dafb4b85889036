"""The pipeline's wiring, declared as data: logical datapaths and their stages.

As in OVN, the pipeline is made of logical datapaths (the logical switch,
`ls_*`, and the logical router, `lr_*`), each with an ingress and an egress
pipeline of stages, framed by the chassis-specific stages that map OpenFlow
ports and tunnels to logical ports and back (`localize` fills them).
A stage declares the fields its flows may match, where its flows may go and
what happens to what none of its flows claims (`default`).  Table numbers are
positions in `PIPELINE` and nowhere else: builders say `NEXT` (the next stage
of the same pipeline, passing over `branch` stages that only a name reaches;
after the last one, as `OUTPUT`), `OUTPUT` (from ingress: the datapath's
egress pipeline; from egress: the chassis' output stage) or a stage name,
and `resolve` turns that into a table.  So a new stage is one `Stage` in its
datapath's tuple and one builder, and the flows that said `NEXT` before it
now reach it.  The declaration is checked and worked out once at import
(`_Layout`); `declared` swaps in another one, for tests of a new stage.
Datapaths meet only through patches, flows that load the other datapath's
key and ports and resubmit to its stage (a router's port's output in
`phy_out` into `lr_in_admission`; `lr_out_delivery` into the switch's
`ls_in_l2_lkup`), declared like any other jump.

Every flow of a datapath's stage is scoped to one datapath: the emitter adds
the datapath's key (`Datapath.key`: `metadata` = the network's VNI, or
`ROUTER_BASE | router.tunnel_key` for a router, above every VNI) to its match, so builders never match it themselves and a frame never
leaves its datapath.  `check` refuses a flow that matches a field its stage
did not declare, or goes -- by goto, resubmit (to table 0 as well; a
resubmit without a table goes back to its own) or `ct(table=)` -- where its
stage may not: a compiler bug caught where it is made, not on the wire.

Registers carry the logical context between stages, as OVN's do: `reg6`
the logical input port and `reg7` the logical output port (port tunnel keys,
unique within a network; keys with bit 15 set name a set of chassis to flood
to), `reg5` flags (bit 0: the frame came out of a tunnel, so it never goes
back into one; bit 1: the switch's own answer -- a reject's RST or ICMP
error the controller sends with a packet-out -- which the firewall passes;
bit 2: the frame came in from the physical network by a localnet port, so it
never goes back out to it; bit 3: redirected to the active gateway chassis;
bit 4: a router's `check_pkt_larger` found it longer than the out network's
MTU).  An external network's *localnet* port
(`LOCALNET_KEY`, 0x10000: above every port key the model gives -- 15
bits -- and every flood key; it never crosses a tunnel) stands for the physical network, on every chassis that maps the
network's physnet to an uplink (`localize`).  The firewall (`acl`) adds `reg4[0..15]`, the conntrack
zone of the port whose rules apply (the input port's, loaded in `phy_in`;
the output port's, loaded in `ls_out_zone`), `reg8`-`reg11` the guarded
port's memberships and `reg12`-`reg15` the other end's (bits, see
`acl.Atoms`), `reg2` the guarded port's tenant (its rule flows are shared
by its networks, and told from other tenants' by it) and `reg3` first the
port whose memberships `ls_in_acl_bits` looks up (one flow a port, a branch
both pipelines resubmit to; for the other end with its side in bits 16-23,
and past a router's port a lookup by address in the routing domain, the
address in `reg12`.., which `ls_in_acl_bits` resubmits to itself), then the
logged rule a copy sent to `*_acl_log` is for.
Registers survive `ct(table=)`, so what is loaded before conntrack is there
after it.  In a router's pipeline `reg6`/`reg7` are the router's own port
numbers (its interfaces, from 1), `reg0` the next hop (`REG_NEXTHOP`: 0 the
destination itself, else a static route's next hop by number), `reg1` the
router's conntrack zone on this chassis (`REG_RZONE`, for NAT: `reg4` keeps
the firewall's); the patch back into a network loads the router port's key
there into `reg6`.

The firewall's stages sit after the lookup in ingress (the sender's egress
rules need the receiver: `reg7`) and before port security in egress;
`ls_out_zone` is a chassis stage inside the egress pipeline: only a port
bound to this chassis gets its zone and its rules checked here, a frame for
a port elsewhere passes on to its chassis, which checks them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from ..pipeline.actions import Ct, Resubmit
from ..pipeline.fields import lookup
from ..pipeline.flow import Flow

__all__ = [
    "DATAPATH_KEY",
    "FLAG_ANSWER",
    "FLAG_FROM_LOCALNET",
    "FLAG_FROM_TUNNEL",
    "FLAG_LARGER",
    "FLAG_REDIRECT",
    "LOCALNET_KEY",
    "NEXT",
    "OUTPUT",
    "PHY_IN",
    "PHY_OUT",
    "PIPELINE",
    "REG_ACL_LOCAL",
    "REG_ACL_REMOTE",
    "REG_FLAGS",
    "REG_INPORT",
    "REG_LOG",
    "REG_NEXTHOP",
    "REG_OUTPORT",
    "REG_RZONE",
    "REG_TENANT",
    "REG_ZONE",
    "ROUTER",
    "SWITCH",
    "Datapath",
    "Stage",
    "StageError",
    "check",
    "datapath_of",
    "declared",
    "pipeline",
    "resolve",
    "scope_of",
    "stage",
    "stage_of",
    "table",
]

REG_INPORT = "reg6"
REG_OUTPORT = "reg7"
REG_FLAGS = "reg5"
FLAG_FROM_TUNNEL = 1
FLAG_ANSWER = 2  # the switch's own answer (a controller's packet-out): never filtered
FLAG_FROM_LOCALNET = 4  # came in by a localnet port: never back out to the physical network
LOCALNET_KEY = 0x10000  # an external network's localnet port (its uplink on each chassis)
REG_ZONE = "reg4"
REG_LOG = "reg3"
REG_TENANT = "reg2"
REG_ACL_LOCAL = ("reg8", "reg9", "reg10", "reg11")
REG_ACL_REMOTE = ("reg12", "reg13", "reg14", "reg15")
REG_NEXTHOP = "reg0"  # the router's next hop: 0 the destination itself, else its number
REG_RZONE = "reg1"  # the router's conntrack zone on this chassis (NAT), loaded in lr_in_zone
FLAG_REDIRECT = 8  # a router's frame sent to its active gateway chassis, to be routed there
FLAG_LARGER = 16  # lr_in_chk_pkt_len: longer than the out interface's network's MTU

NEXT = "next"
OUTPUT = "output"
DATAPATH_KEY = "metadata"  # every datapath's key travels here between stages


@dataclass(frozen=True)
class Stage:
    name: str
    fields: tuple[str, ...]  # what its flows may match (a datapath's key is implied)
    next: tuple[str, ...]  # where its flows may go: stage names, NEXT, OUTPUT
    doc: str
    default: str | None = None  # where unclaimed packets go (a `next` target); None drops
    chassis: bool = False  # filled per chassis by `localize`, not by the logical compile
    branch: bool = False  # reached by name only: NEXT passes over it


@dataclass(frozen=True)
class Datapath:
    """A kind of logical datapath: its key's field and its two pipelines."""

    kind: str
    key: str  # the field holding the datapath's key in every stage of it
    ingress: tuple[Stage, ...]
    egress: tuple[Stage, ...]
    # where a frame from another chassis that carries no logical ports enters
    reentry: str

    @property
    def stages(self) -> tuple[Stage, ...]:
        return self.ingress + self.egress


# -- the chassis' stages -------------------------------------------------------------------
PHY_IN = Stage(
    "phy_in",
    ("in_port", "tun_id", "tun_metadata0", "vlan_vid"),
    ("ls_in_port_sec", "ls_in_l2_lkup", "ls_out_zone"),
    "OpenFlow port -> datapath key and logical input port (reg6); "
    "a tunnel's VNI -> datapath, its Geneve option -> logical ports; "
    "an uplink (and VLAN) -> an external network's localnet port",
    chassis=True,
)
PHY_OUT = Stage(
    "phy_out",
    (DATAPATH_KEY, REG_OUTPORT, REG_FLAGS, "eth_type"),
    ("lr_in_zone",),
    "logical output port -> OpenFlow port here, or a tunnel to the port's chassis; "
    "a router's port: into the router's pipeline here (the patch); a frame for a router "
    "whose active gateway is elsewhere, redirected: into the tunnel to that chassis",
    chassis=True,
)

# -- the logical switch ---------------------------------------------------------------------
_L2 = (REG_INPORT, "eth_src", "eth_dst", "eth_type")
_RESPONDER = ("arp_op", "arp_tpa", "ip_proto", "icmpv6_type", "ipv6_src", "nd_target", "nd_sll")
_SERVICE = ("eth_type", "ip_proto", "tp_src", "tp_dst", "icmp_type", "icmp_code", "icmpv6_type",
            "icmpv6_code")  # fmt: skip
_RULE = (*_SERVICE, REG_TENANT, *REG_ACL_LOCAL, *REG_ACL_REMOTE, "ct_state", "ct_mark")


BITS = "ls_in_acl_bits"  # a port's memberships by its key in reg3, for both pipelines


def _acl(side: str, local: str, remote: str, done: str) -> tuple[Stage, ...]:
    """The firewall's stages of one pipeline: the rules of the port in `local`."""
    p = f"ls_{side}"
    whose = "the sender's egress" if side == "in" else "the receiver's ingress"
    addr = ("ipv4_dst", "ipv6_dst") if side == "in" else ("ipv4_src", "ipv6_src")
    return (
        Stage(
            f"{p}_pre_acl",
            (REG_FLAGS, *_SERVICE),
            (NEXT, done, BITS),
            f"the guarded port's memberships ({REG_ACL_LOCAL[0]}.., looked up in {BITS}); "
            "never-filtered traffic passes",
            default=done,
        ),
        Stage(
            f"{p}_acl_peer",
            (REG_TENANT, *REG_ACL_LOCAL),
            (NEXT, done, BITS),
            f"a filtered port: the other end's memberships ({REG_ACL_REMOTE[0]}..); "
            "an unfiltered port passes",
            default=done,
        ),
        Stage(
            f"{p}_acl_ct",
            ("eth_type",),
            (f"{p}_acl", done),
            "IP through conntrack in the guarded port's zone; other frames pass",
            default=done,
        ),
        Stage(
            f"{p}_acl",
            (*_RULE, local, *addr),
            (NEXT, f"{p}_stateful", done, f"{p}_acl_log", f"{p}_acl_block"),
            f"{whose} policies, in order; replies and related pass, invalid and blocked "
            "replies drop, the original direction meets the rules",
            default=NEXT,
        ),
        Stage(
            f"{p}_acl_sg",
            (*_RULE, *addr),
            (NEXT, f"{p}_acl_block"),
            f"{whose} security groups: their allow rules, then default deny",
            default=NEXT,
        ),
        Stage(
            f"{p}_stateful",
            ("eth_type", "ct_state", "ct_mark"),
            (NEXT,),
            "commit the allowed connection (not blocked); an established one passes",
            default=NEXT,
        ),
        Stage(
            f"{p}_acl_log",
            (local, REG_LOG),
            (),
            "a logged rule's copy: to the controller, metered",
            branch=True,
        ),
        Stage(
            f"{p}_acl_block",
            ("eth_type", "ct_state", "ct_mark"),
            (),
            "denied: drop, and an established connection is marked blocked",
            branch=True,
        ),
    )


SWITCH = Datapath(
    "ls",
    DATAPATH_KEY,
    ingress=(
        Stage(
            "ls_in_port_sec",
            (*_L2, "ip_proto", "ipv4_src", "ipv6_src", "arp_spa", "arp_sha", "icmpv6_type"),
            (NEXT,),
            "admit only the port's own MAC and addresses (port security)",
        ),
        Stage(
            "ls_in_dhcp",
            (REG_INPORT, "eth_type", "ip_proto", "ipv4_src", "ipv6_dst", "tp_src", "tp_dst")
            + ("icmpv6_type",),
            (NEXT,),
            "DHCP, DHCPv6 requests and router solicitations to the controller, which "
            "answers from the model (`dhcp`); 0.0.0.0 sources that are no DHCP dropped",
            default=NEXT,
        ),
        Stage(
            "ls_in_arp_rsp",
            (*_L2, *_RESPONDER),
            (NEXT, "ls_in_nd_na"),
            "answer ARP and IPv6 neighbour solicitations for addresses the model knows",
            default=NEXT,
        ),
        Stage(
            "ls_in_nd_na",
            ("eth_type", "ip_proto", "icmpv6_type", "nd_target"),
            (),
            "finish the advertisement the responder made: the target's link-layer address",
            branch=True,
        ),
        Stage(
            "ls_in_l2_lkup",
            (*_L2, "ip_proto", "icmpv6_type", "ipv6_dst", "arp_op", "arp_tpa", "nd_target"),
            (NEXT, PHY_OUT.name),
            "destination MAC -> logical output port (reg7); broadcast to the network's ports "
            "(here, and one copy to each other chassis with ports in the network); from the "
            "physical network, ARP and solicitations for a gateway's (or floating IP's) "
            "address to the router, where it is resident",
        ),
        *_acl("in", REG_INPORT, REG_OUTPORT, OUTPUT),
        Stage(
            BITS,
            (REG_LOG, "eth_type", "ipv4_src", "ipv6_src", *REG_ACL_REMOTE),
            (BITS,),
            f"a port's memberships by its key in {REG_LOG}, into {REG_ACL_REMOTE[0]}.. "
            "(resubmitted to by both pipelines' firewall); past a router's port, by the "
            "other end's address",
            branch=True,
        ),
    ),
    egress=(
        Stage(
            "ls_out_zone",
            (REG_OUTPORT,),
            (NEXT, "ls_out_port_sec"),
            "a port bound here: its conntrack zone, and its rules next; "
            "a port elsewhere: on to its chassis",
            default="ls_out_port_sec",
            chassis=True,
        ),
        *_acl("out", REG_OUTPORT, REG_INPORT, "ls_out_port_sec"),
        Stage(
            "ls_out_port_sec",
            (*_L2, REG_OUTPORT),
            (OUTPUT,),
            "a port receives only its MAC, broadcast and multicast (no promiscuous mode)",
        ),
    ),
    reentry="ls_in_l2_lkup",
)

# -- the logical router ---------------------------------------------------------------------
_IP_DST = ("ipv4_dst", "ipv6_dst")
_IP_INPUT = (REG_INPORT, "eth_type", "ip_proto", "ip_ttl", "icmp_type", "icmpv6_type",
             "ipv4_src", "ipv6_src", *_IP_DST, "arp_op", "arp_tpa", "nd_target")  # fmt: skip
ROUTER = Datapath(
    "lr",
    DATAPATH_KEY,
    ingress=(
        Stage(
            "lr_in_zone",
            (),
            (NEXT,),
            f"the router's conntrack zone on this chassis into {REG_RZONE} (for NAT)",
            default=NEXT,
            chassis=True,
        ),
        Stage(
            "lr_in_admission",
            (REG_INPORT, "eth_dst", "eth_type"),
            (NEXT,),
            "frames for the interface's MAC (of its family), and broadcast ARP; "
            "nothing else enters the router",
        ),
        Stage(
            "lr_in_dnat",
            (REG_INPORT, "eth_type", "ipv4_dst", "ip_proto", "tp_dst"),
            (NEXT,),
            "from outside, by the gateway: to a floating IP (and a forwarded port) "
            "translated to the port's address, a reply to the gateway's address "
            "untranslated -- both through the router's zone",
            default=NEXT,
        ),
        Stage(
            "lr_in_ip_input",
            _IP_INPUT,
            (NEXT, OUTPUT, "lr_in_nd_na"),
            "echo requests to a router address answered in place; ARP and neighbour "
            "discovery to the controller (learned from); the rest to router addresses and "
            "martians dropped; TTL <= 1 to the controller (time exceeded)",
            default=NEXT,
        ),
        Stage(
            "lr_in_ip_routing",
            (REG_INPORT, "eth_type", "ipv4_src", *_IP_DST),
            (NEXT, "lr_in_arp_resolve", "lr_in_gw_redirect"),
            f"longest prefix first: dec_ttl, out interface ({REG_OUTPORT}), next hop "
            f"({REG_NEXTHOP}), the interface's MAC as source; ECMP by a select group; "
            "no route: to the controller (unreachable)",
        ),
        Stage(
            "lr_in_arp_resolve",
            (REG_OUTPORT, REG_NEXTHOP, "eth_type", *_IP_DST),
            (NEXT,),
            "next hop -> its MAC as destination, from the model's ports, then the learned "
            "neighbours (unknown: to the controller, which asks for it)",
        ),
        Stage(
            "lr_in_chk_pkt_len",
            (REG_OUTPORT, "eth_type"),
            (NEXT,),
            "IP out of an interface whose network has an MTU: longer than it? "
            f"(check_pkt_larger into {REG_FLAGS} bit {FLAG_LARGER.bit_length() - 1})",
            default=NEXT,
        ),
        Stage(
            "lr_in_larger_pkts",
            (REG_INPORT, REG_OUTPORT, REG_FLAGS, "eth_type"),
            (NEXT,),
            "too big for the out interface's network: to the controller (fragmentation "
            "needed, packet too big with the MTU)",
            default=NEXT,
        ),
        Stage(
            "lr_in_nd_na",
            (REG_INPORT, "eth_type", "ip_proto", "icmpv6_type", "nd_target"),
            (OUTPUT,),
            "a neighbour solicitation from outside for the gateway's address, now an "
            "advertisement: its target link-layer address, then out by the gateway",
            branch=True,
        ),
        Stage(
            "lr_in_gw_redirect",
            (REG_INPORT,),
            ("phy_out",),
            "out of the gateway on a chassis that is not its active one: the frame as it "
            "came, back into its network for the router's port on the active gateway "
            "chassis (the chassis redirect)",
            branch=True,
        ),
    ),
    egress=(
        Stage(
            "lr_out_snat",
            (REG_OUTPORT, "eth_type", "ipv4_src"),
            (NEXT,),
            "out of the gateway: a floating IP's port as its floating IP, the router's "
            "subnets as the gateway's address (snat), replies untranslated -- through the "
            "router's zone",
            default=NEXT,
        ),
        Stage(
            "lr_out_delivery",
            (REG_OUTPORT,),
            ("ls_in_l2_lkup",),
            "the out interface: into its network's lookup here (the patch), the router's "
            f"port there in {REG_INPORT}",
        ),
    ),
    reentry="lr_in_admission",
)

DATAPATHS: tuple[Datapath, ...] = (SWITCH, ROUTER)
PIPELINE: tuple[Stage, ...] = (PHY_IN, *(s for dp in DATAPATHS for s in dp.stages), PHY_OUT)


class StageError(ValueError):
    pass


class _Layout:
    """The declaration worked out once: tables, datapaths, what each stage may do."""

    def __init__(self, datapaths: Sequence[Datapath]) -> None:
        self.pipeline = (PHY_IN, *(s for dp in datapaths for s in dp.stages), PHY_OUT)
        self.by_name = {s.name: (i, s) for i, s in enumerate(self.pipeline)}
        if len(self.by_name) != len(self.pipeline):
            raise StageError("two stages with one name")
        self.dp = {s.name: dp for dp in datapaths for s in dp.stages}
        self.fields: dict[str, frozenset[int]] = {}
        # the field a datapath's flows of each stage match its key in (None: they do not)
        self.scope: dict[str, str | None] = {}
        self.jumps: dict[tuple[str, str], int] = {}  # (stage, NEXT|OUTPUT|name) -> table
        for kind in datapaths:
            if self.dp.get(kind.reentry) is not kind:
                raise StageError(f"{kind.kind}: re-enters at {kind.reentry!r}, none of its stages")
        for st in self.pipeline:
            dp = self.dp.get(st.name)
            names = (*st.fields, dp.key) if dp is not None else st.fields
            self.fields[st.name] = frozenset(lookup(f).index for f in names)
            if dp is not None:
                self.scope[st.name] = dp.key
            else:
                self.scope[st.name] = DATAPATH_KEY if DATAPATH_KEY in st.fields else None
            for to in st.next:
                self.jumps[(st.name, to)] = self.table(self._target(st, to))
            if st.default is not None and st.default not in st.next:
                raise StageError(f"{st.name}: its default {st.default!r} is not among its next")
        self.next = {
            st.name: frozenset(t for (n, _), t in self.jumps.items() if n == st.name)
            for st in self.pipeline
        }

    def table(self, name: str) -> int:
        try:
            return self.by_name[name][0]
        except KeyError:
            raise StageError(f"no stage {name!r}") from None

    def _target(self, here: Stage, to: str) -> str:
        """`to` (NEXT, OUTPUT or a stage name) as seen from stage `here`: a stage name."""
        if to not in (NEXT, OUTPUT):
            self.table(to)
            return to
        dp = self.dp.get(here.name)
        if dp is None:
            raise StageError(f"{here.name}: {to!r} means nothing outside a datapath")
        ingress = here in dp.ingress
        if to == NEXT:
            line = dp.ingress if ingress else dp.egress
            after = [s for s in line[line.index(here) + 1 :] if not s.branch]
            if after:
                return after[0].name
        return dp.egress[0].name if ingress else PHY_OUT.name


_layout = _Layout(DATAPATHS)


@contextmanager
def declared(*datapaths: Datapath) -> Iterator[None]:
    """The pipeline as if `datapaths` were declared in place of the kinds they name, the
    other kinds as they are (a new stage tried out in a test)."""
    global _layout
    given = {d.kind: d for d in datapaths}
    full = (*(given.pop(d.kind, d) for d in DATAPATHS), *given.values())
    before, _layout = _layout, _Layout(full)
    try:
        yield
    finally:
        _layout = before


def pipeline() -> tuple[Stage, ...]:
    """Every stage, in table order."""
    return _layout.pipeline


def table(name: str) -> int:
    """The OpenFlow table of a stage."""
    return _layout.table(name)


def stage(name: str) -> Stage:
    return _layout.pipeline[table(name)]


def stage_of(table_id: int) -> str:
    p = _layout.pipeline
    return p[table_id].name if 0 <= table_id < len(p) else f"table {table_id}"


def scope_of(name: str) -> str | None:
    """The field in which a datapath's flows of stage `name` match its key, if they do.

    Every stage of a datapath does; a chassis' stage does if it declares
    `DATAPATH_KEY` among its fields (the output stage).
    """
    if name not in _layout.scope:
        raise StageError(f"no stage {name!r}")
    return _layout.scope[name]


def datapath_of(name: str) -> Datapath | None:
    """The datapath kind a stage belongs to; None for the chassis' stages."""
    table(name)
    return _layout.dp.get(name)


def resolve(name: str, to: str) -> int:
    """The table a flow of stage `name` reaches by `to` (NEXT, OUTPUT or a stage name)."""
    t = _layout.jumps.get((name, to))
    if t is None:
        where = to if to in (NEXT, OUTPUT) else stage(to).name
        raise StageError(f"{stage(name).name}: may not go to {where}")
    return t


def check(flow: Flow) -> None:
    """StageError if `flow` matches an undeclared field or goes where its stage may not."""
    p = _layout.pipeline
    if not 0 <= flow.table < len(p):
        raise StageError(f"table {flow.table} is no stage")
    name = p[flow.table].name
    allowed = _layout.fields[name]
    for slot, _, _ in flow.match.items:
        if slot not in allowed:
            raise StageError(f"{name}: matches undeclared field (slot {slot}) in {flow.origin}")
    ins = flow.instructions
    targets = [] if ins.goto is None else [ins.goto]
    for a in (*ins.apply, *ins.write):
        if isinstance(a, Resubmit):
            targets.append(flow.table if a.table is None else a.table)
        elif isinstance(a, Ct) and a.table is not None:
            targets.append(a.table)
    ok = _layout.next[name]
    for t in targets:
        if t not in ok:
            raise StageError(f"{name}: may not go to {stage_of(t)} ({flow.origin})")

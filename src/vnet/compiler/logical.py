"""Model -> logical flows: chassis-independent, each with its provenance.

A logical flow is a pipeline `Flow` in a stage of a logical datapath
(`stages`) that speaks of datapaths and logical ports -- the datapath's key
in its `key` field, `reg6`/`reg7` the logical input/output port key -- never
of OpenFlow port numbers; `localize` adds those per chassis.  Every flow
says where it came from: `origin` names the model object, the stage and the
rule, and the cookie is derived from the same (high 32 bits: the object's
id, low 32: the rule), so a flow dump or a trace answers "which object put
this here".

Builders are registered per stage (`port_stage`, `network_stage`), per
feature (`feature`: the firewall) or per datapath kind (`datapath_kind`: the
router, whose flows are built per router, and per port of a network it is
attached to for what the port adds to it): each gets an emitter bound to its
stage and datapath, which scopes every flow to the
datapath (the key goes into the match here, in one place), resolves `NEXT`,
`OUTPUT` and stage names to tables, and checks the flow against the stage's
declaration.  Actions that jump (`To`) are resolved the same way.

Compiling is a pure function of the model, and incremental by construction:
each port's flows and each network's flows (and each router's, and each
port's next-hop flows in a router) are memoised (`memo.recall`) on exactly
the fields their builders read, recorded as they read them, so a change to
one port recompiles that port and its network's flood flows, nothing else.
A flow may name a group (a router's ECMP): the group travels with it
(`LFlow.group`) and is installed on the chassis that get the flow.  Output is sorted: the same model gives byte-identical flows.
A flow that makes its chassis a router's active gateway says so
(`LFlow.stands_down`; `standing_down` gathers their cookies per chassis): its
chassis' switch stops matching it while isolated from every BFD peer.
A change to a few ports' fields alone (a relabel) does not even walk the
other ports' memo entries: their flows and their networks' are recalled and
the last output patched (`_ports_only`), so it costs milliseconds at 10,000
ports.  What a feature numbers (the firewall's bits) is kept from one compile
to the next (`Compiler.kept`).
"""

from __future__ import annotations

import bisect
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..model.objects import Network, Port
from ..model.rules import State
from ..pipeline.actions import Action, Resubmit, SetField
from ..pipeline.fields import lookup
from ..pipeline.flow import Flow, Instructions
from ..pipeline.groups import GroupDesc
from ..pipeline.match import Match
from .memo import Memo, recall
from .stages import (
    FLAG_FROM_TUNNEL,
    REG_FLAGS,
    REG_INPORT,
    REG_OUTPORT,
    REG_RZONE,
    REG_ZONE,
    StageError,
    check,
    pipeline,
    resolve,
    scope_of,
    stage,
    table,
)

__all__ = [
    "Compiler",
    "Feature",
    "Kind",
    "LFlow",
    "To",
    "cookie_for",
    "datapath_key",
    "datapath_kind",
    "feature",
    "network_stage",
    "port_stage",
    "standing_down",
]


@dataclass(frozen=True)
class LFlow:
    flow: Flow
    datapath: str | None  # the datapath's id (a network's); None: every chassis gets it
    owner: tuple[str, str]  # (kind, id) of the model object
    rule: str
    # a flood: the logical ports it delivers to (localize splits them into this chassis'
    # own and one tunnelled copy per other chassis)
    flood: tuple[int, ...] = ()
    # what a flow that sends to the controller means (`acl.Punt`, `router.Punt`); None for
    # the others
    punt: Any = field(default=None, compare=False)
    # the group the flow's actions name (a router's ECMP), installed with it
    group: GroupDesc | None = field(default=None, compare=False)
    # where the flow is installed: (chassis id, True) only there, (chassis id, False)
    # everywhere but there, None everywhere (OVN's is_chassis_resident)
    resident: tuple[str, bool] | None = None
    # the flow makes its chassis a router's active gateway (resident there, and another
    # gateway chassis could take over): it stands down -- matches nothing -- while that
    # chassis' switch is isolated from every BFD peer (the controller's stand-down set)
    stands_down: bool = False
    # the output order (table, priority down, match, instructions), computed once: an
    # LFlow lives in the compiler's memo across compiles, so sorting costs no repr()
    order: tuple[int, int, str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        f = self.flow
        key = (f.table, -f.priority, repr(f.match), repr(f.instructions))
        object.__setattr__(self, "order", key)


@dataclass(frozen=True)
class To:
    """A resubmit whose table the emitter resolves: NEXT, OUTPUT or a stage name."""

    target: str


def cookie_for(owner_id: str, rule: str) -> int:
    return (zlib.crc32(owner_id.encode()) << 32) | zlib.crc32(rule.encode())


def datapath_key(net: Network) -> int:
    """A logical switch's key in `metadata` and on the wire: its network's VNI.

    A router's is `router.router_key`: above every VNI, so the two never meet."""
    return net.segment_id or 0


_SLOT = {n: lookup(n).index for n in ("eth_src", "eth_dst", "arp_op", "arp_sha", "arp_tha",
                                        "arp_spa", "arp_tpa", "ipv6_src", "ipv6_dst", "nd_tll",
                                        "icmpv6_type", "nd_reserved", "nd_options_type",
                                        "tun_id", "tun_dst", "tun_metadata0",
                                        REG_INPORT, REG_OUTPORT, REG_FLAGS, REG_ZONE,
                                        REG_RZONE)}  # fmt: skip


def _load(reg: str, value: int) -> SetField:
    return SetField(_SLOT[reg], value)


def resolved(stage_name: str, actions: Sequence[Action | To]) -> tuple[Action, ...]:
    """`actions` with each `To` turned into a resubmit to the table it names."""
    if not any(isinstance(a, To) for a in actions):
        return tuple(actions)  # type: ignore[arg-type]
    return tuple(
        Resubmit(None, resolve(stage_name, a.target)) if isinstance(a, To) else a for a in actions
    )


class _Emit:
    """Collects the flows of one model object, stamped with their provenance.

    `net` is the datapath the flows belong to: every flow of a datapath's stage
    matches its key -- a network's VNI, or `key` for another kind (a router).  The
    chassis' stages match or write it themselves.
    """

    def __init__(self, kind: str, obj: Any, net: Any, key: int | None = None) -> None:
        self.kind, self.name, self.id = kind, obj.name, obj.id
        self.hi = zlib.crc32(self.id.encode()) << 32  # the cookie's owner half
        self.datapath: str | None = None if net is None else net.id
        self.key = None if net is None else datapath_key(net) if key is None else key
        self.out: list[LFlow] = []

    def at(self, stage_name: str) -> _At:
        return _At(self, stage_name)

    def __call__(
        self,
        stage_name: str,
        priority: int,
        rule: str,
        match: dict[str, Any],
        apply: Sequence[Action | To] = (),
        goto: str | None = None,
        enter: int | None = None,
        flood: tuple[int, ...] = (),
        meter: int | None = None,
        punt: Any = None,
        group: GroupDesc | None = None,
        resident: tuple[str, bool] | None = None,
        stands_down: bool = False,
    ) -> None:
        if self.key is not None:
            scope = scope_of(stage_name)
            if scope is not None:
                match = {**match, scope: self.key}
        ins = Instructions(
            apply=resolved(stage_name, apply),
            meter=meter,
            goto=None if goto is None else resolve(stage_name, goto),
            metadata=None if enter is None else (enter, (1 << 64) - 1),
        )
        f = Flow(
            match=Match.of(**match),
            instructions=ins,
            table=table(stage_name),
            priority=priority,
            cookie=self.hi | zlib.crc32(rule.encode()),
            origin=f"{self.kind} {self.name} ({self.id}) · {stage_name} · {rule}",
        )
        check(f)
        owner = (self.kind, self.id)
        lf = LFlow(f, self.datapath, owner, rule, flood, punt, group, resident, stands_down)
        self.out.append(lf)


class _At:
    """An emitter bound to one stage: what a builder is given."""

    def __init__(self, emit: _Emit, stage_name: str) -> None:
        self.emit, self.stage = emit, stage_name

    def __call__(
        self,
        priority: int,
        rule: str,
        match: dict[str, Any],
        apply: Sequence[Action | To] = (),
        goto: str | None = None,
        flood: tuple[int, ...] = (),
    ) -> None:
        self.emit(self.stage, priority, rule, match, apply, goto, flood=flood)


PortBuilder = Callable[[_At, Network, Port], None]
NetworkBuilder = Callable[[_At, Network, Sequence[Port]], None]
_PORT: list[tuple[str, PortBuilder]] = []
_NETWORK: list[tuple[str, NetworkBuilder]] = []


def _logical(name: str) -> None:
    if stage(name).chassis:
        raise StageError(f"{name}: a chassis stage, filled by localize, not by the logical compile")


def port_stage(name: str) -> Callable[[PortBuilder], PortBuilder]:
    """Register a builder of stage `name`'s flows for each port."""
    _logical(name)

    def register(fn: PortBuilder) -> PortBuilder:
        _PORT.append((name, fn))
        return fn

    return register


def network_stage(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Register a builder of stage `name`'s flows for each network (given its ports)."""
    _logical(name)

    def register(fn: NetworkBuilder) -> NetworkBuilder:
        _NETWORK.append((name, fn))
        return fn

    return register


def port_flows(net: Network, port: Port) -> list[LFlow]:
    e = _Emit("port", port, net)
    for name, fn in _PORT:
        fn(e.at(name), net, port)
    return e.out


def network_flows(net: Network, ports: Sequence[Port]) -> list[LFlow]:
    e = _Emit("network", net, net)
    for name, fn in _NETWORK:
        fn(e.at(name), net, ports)
    return e.out


@dataclass(frozen=True)
class Feature:
    """Flows built from a per-tenant context as well as the network and port (the firewall).

    `context` reads the whole model once per compile (tenant id -> what the
    builders read; a tenant without one gets no flows of the feature), given
    the previous compile's (None on the first) so what it numbers can keep its
    numbers (the firewall's membership bits); the
    builders are memoised like the others, on what they read of the context
    (`tenant`: flows every chassis gets, scoped by the feature itself) and of
    the network and the port (`port`).
    """

    name: str
    context: Callable[[State, Mapping[str, Any] | None], Mapping[str, Any]]
    shared: Callable[[], list[LFlow]]  # flows every datapath shares
    tenant: Callable[[Any], list[LFlow]]
    port: Callable[[Network, Port, Any], list[LFlow]]


_FEATURES: list[Feature] = []


def feature(f: Feature) -> Feature:
    """Register a feature's builders with the compiler."""
    _FEATURES.append(f)
    return f


@dataclass(frozen=True)
class Kind:
    """A kind of logical datapath besides the switch (the router), attached to networks.

    `objects` names each datapath of the kind in the model with what its
    builder reads: `(id, objs, args)`, and `build(*objs, *args)` makes its
    flows -- memoised on what it reads of `objs` and on `args` whole.  What a
    port of a network it attaches to adds to it (a router's next hop to the
    port's MAC) is built per port: `attach` gives, per network id, values the
    port's builder is given beside the network and the port
    (`port(net, port, *attach[net])`).  `attach` reads no port: a change to
    ports alone leaves it as it was.
    """

    name: str
    objects: Callable[[State], list[tuple[str, tuple[Any, ...], tuple[Any, ...]]]]
    build: Callable[..., list[LFlow]]
    attach: Callable[[State], Mapping[str, tuple[Any, ...]]]
    port: Callable[..., list[LFlow]]


_KINDS: list[Kind] = []


def datapath_kind(k: Kind) -> Kind:
    """Register a datapath kind's builders with the compiler."""
    _KINDS.append(k)
    return k


@dataclass(frozen=True)
class _Pipeline:
    name: str = "pipeline"
    id: str = "pipeline"


def default_flows() -> list[LFlow]:
    """Each stage's lowest-priority flow, as declared: what happens to what nothing claimed."""
    e = _Emit("stage", _Pipeline(), None)
    for st in pipeline():
        if st.default is None:
            e(st.name, 0, "default: drop", {})
        else:
            e(st.name, 0, "default: continue", {}, goto=st.default)
    flag = (FLAG_FROM_TUNNEL, FLAG_FROM_TUNNEL)
    e("phy_out", 50, "out of a tunnel: never back into one", {REG_FLAGS: flag})
    return e.out


@dataclass
class Compiler:
    """Memoised compile: `compile(state)` recomputes only objects whose inputs changed.

    It also keeps each feature's context from one compile to the next (`kept`),
    so numbers a feature allocates stay put; `Compiler(kept=other.kept)` starts
    from another compiler's (a scratch compile that must agree with the live one).
    """

    _memo: Memo = field(default_factory=dict)
    recompiled: int = 0  # objects compiled by the last call (the rest came from the memo)
    kept: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # feature -> context
    # each datapath kind's `attach` of the last compile (what `_ports_only` builds ports with)
    _attached: dict[str, Mapping[str, tuple[Any, ...]]] = field(default_factory=dict)
    # the last compile: its model, output and each network's ports (for `_ports_only`)
    _last: tuple[State, list[LFlow], dict[str, list[Port]]] | None = None

    def _cached(
        self, key: tuple[str, ...], objs: Sequence[Any], build: Any, args: tuple[Any, ...] = ()
    ) -> list[LFlow]:
        flows, built = recall(self._memo, key, objs, build, args)
        self.recompiled += built
        return flows  # type: ignore[no-any-return]

    def compile(self, state: State) -> list[LFlow]:
        self.recompiled = 0
        quick = self._ports_only(state)
        if quick is not None:
            return quick
        out = default_flows()
        ctx = [(f, f.context(state, self.kept.get(f.name))) for f in _FEATURES]
        self.kept = {f.name: c for f, c in ctx}
        seen: set[tuple[str, ...]] = set()
        for f, by_tenant in ctx:
            out += f.shared()
            for tid, c in sorted(by_tenant.items()):
                tk: tuple[str, ...] = (f.name, "tenant", tid)
                seen.add(tk)
                out += self._cached(tk, (c,), f.tenant)
        attached = {k.name: k.attach(state) for k in _KINDS}
        self._attached = attached
        for kind in _KINDS:
            for oid, objs, args in kind.objects(state):
                k0: tuple[str, ...] = (kind.name, oid)
                seen.add(k0)
                out += self._cached(k0, objs, kind.build, args)
        ports_by_net: dict[str, list[Port]] = {}
        for p in state.all("port"):
            ports_by_net.setdefault(p.network, []).append(p)
        for net in state.all("network"):
            ports = ports_by_net.get(net.id, [])
            k: tuple[str, ...] = ("network", net.id)
            seen.add(k)
            out += self._cached(k, (net, *ports), lambda n, *ps: network_flows(n, ps))
            for p in ports:
                k = ("port", p.id)
                seen.add(k)
                out += self._cached(k, (net, p), port_flows)
                for f, by_tenant in ctx:
                    c = by_tenant.get(net.tenant)
                    if c is not None:
                        k = (f.name, "port", p.id)
                        seen.add(k)
                        out += self._cached(k, (net, p, c), f.port)
                for kind in _KINDS:
                    at = attached[kind.name].get(net.id)
                    if at:
                        k = (kind.name, "port", p.id)
                        seen.add(k)
                        out += self._cached(k, (net, p), kind.port, at)
        for k in list(self._memo):
            if k not in seen:
                del self._memo[k]
        out.sort(key=_order)
        self._last = (state, out, ports_by_net)
        return out

    def _ports_only(self, state: State) -> list[LFlow] | None:
        """The compile of a change to a few ports' fields (a relabel): only their flows and
        their networks' are recalled, and the last output patched -- not a walk over every
        port's memo entry.  None when anything else changed (a port added, removed, moved
        to another network or renamed; any other object): the full walk does it."""
        if self._last is None:
            return None
        prev, last, by_net = self._last
        for kind, objs in state.objects.items():
            was = prev.objects.get(kind, {})
            if kind == "port" or objs is was:
                continue
            if len(objs) != len(was) or any(was.get(k) is not o for k, o in objs.items()):
                return None
        ports: dict[str, Any] = state.objects.get("port", {})
        before: dict[str, Any] = prev.objects.get("port", {})
        if len(ports) != len(before) or len(state.objects) != len(prev.objects):
            return None
        changed = [(before.get(k), p) for k, p in ports.items() if before.get(k) is not p]
        if len(changed) > _FEW:
            return None
        for old, p in changed:
            if old is None or (old.network, old.name) != (p.network, p.name):
                return None
        out = list(last)
        by_net = {n: list(ps) for n, ps in by_net.items()}
        for old, p in changed:
            assert old is not None
            ps = by_net[p.network]
            ps[next(i for i, q in enumerate(ps) if q is old)] = p
        for _, p in changed:
            net = state.get("network", p.network)
            todo: list[tuple[tuple[str, ...], Sequence[Any], Any, tuple[Any, ...]]] = [
                (
                    ("network", net.id),
                    (net, *by_net[net.id]),
                    lambda n, *ps: network_flows(n, ps),
                    (),
                ),
                (("port", p.id), (net, p), port_flows, ()),
            ]
            for f in _FEATURES:
                c = self.kept.get(f.name, {}).get(net.tenant)
                if c is not None:
                    todo.append(((f.name, "port", p.id), (net, p, c), f.port, ()))
            for dk in _KINDS:
                at = self._attached.get(dk.name, {}).get(net.id)
                if at:
                    todo.append(((dk.name, "port", p.id), (net, p), dk.port, at))
            for k, given, build, args in todo:
                hit = self._memo.get(k)
                gone = hit.value if hit is not None else []
                flows = self._cached(k, given, build, args)
                if flows is not gone:
                    _patch(out, gone, flows)
        self._last = (state, out, by_net)
        return out


_FEW = 64  # ports changed at once that the quick path takes


def _patch(out: list[LFlow], gone: Sequence[LFlow], new: Sequence[LFlow]) -> None:
    """Replace `gone` by `new` in the sorted list `out` (each found by its order)."""
    for lf in gone:
        i = bisect.bisect_left(out, lf.order, key=_order)
        while out[i] is not lf:
            i += 1
        del out[i]
    for lf in new:
        bisect.insort_right(out, lf, key=_order)


def _order(lf: LFlow) -> tuple[int, int, str, str]:
    return lf.order


def standing_down(lflows: Sequence[LFlow]) -> tuple[dict[str, frozenset[int]], set[int]]:
    """Chassis id -> the cookies of the flows resident there that stand down when it is
    isolated (`LFlow.stands_down`); and the cookies left out because a flow that does
    not stand down shares them (a cookie names a flow on the switch: none should)."""
    marked: dict[str, set[int]] = {}
    others: set[int] = set()
    for lf in lflows:
        if lf.stands_down and lf.resident is not None and lf.resident[1]:
            marked.setdefault(lf.resident[0], set()).add(lf.flow.cookie)
        else:
            others.add(lf.flow.cookie)
    shared = {c for cs in marked.values() for c in cs} & others
    return {ch: frozenset(cs - shared) for ch, cs in marked.items()}, shared

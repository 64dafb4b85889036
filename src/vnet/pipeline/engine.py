"""The OpenFlow 1.3 pipeline: tables, groups, translation and the decision cache.

Translation (`Pipeline.translate`) walks one packet's key through the tables
-- lookup, instructions, goto -- executing actions on a `XContext`, and returns
a `Decision`: the datapath operations to apply to the frame, the rules that
matched (for counters) and why it was dropped if it was.  It is the one and
only implementation of forwarding semantics: the switch runs it untraced, the
trace runs it with a `Tracer` attached.

Decisions are cached by the exact flow key (`Pipeline.decide`), like Open
vSwitch's exact-match cache in front of its classifier.  Any change to flows or
groups bumps `version`, and a cache that sees a new version starts empty: a
batch of flow-mods committed with `commit` becomes visible all at once or not
at all, since it is validated whole before anything is applied.

A table's lookup is its classifier's, Open vSwitch's conjunctive matches
included: the rule found for a conjunction is its `conj_id` flow, which is
the one charged (its clauses never are, as in Open vSwitch), and since the
result depends only on the key and the tables it is cached like any other.
A modify that turns a flow into a clause or back tells the classifier.
A decision made with `check_pkt_larger` also depends on the frame's length:
it keeps the comparisons it made (`Decision.lengths`) and serves only a
frame on the same side of each (`fits`); another frame is translated again
and its decision replaces the cached one.

Standing down (`set_stand_down`, `set_isolated`): the flows whose cookie is
in the stand-down set match no packet while the switch is isolated (its BFD
sessions all down, `datapath.bfd`) -- they stay in their table (`rules`,
flow stats and dumps see them, a flow-mod finds them) but out of its
classifier, so the lookup never asks; the move happens when the set or the
isolation changes (the version moves), not per packet.

Time is passed in (`now`), never read: the pipeline is testable without sleeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from ..packet import flowkey as fk
from .actions import ACTION_SET_ORDER, Action, ActionError, Group, Output, set_key
from .classifier import Classifier, check_clause
from .context import Hooks, NullHooks, XContext
from .errors import ErrorKind, PipelineError
from .fields import FIELDS
from .flow import OFPFF_CHECK_OVERLAP, Flow, FlowMod, FlowModCommand, Rule
from .groups import GroupEntry, GroupMod, GroupModCommand, GroupType, select_hash
from .match import Match

if TYPE_CHECKING:
    from .trace import Tracer

__all__ = ["N_TABLES", "SIDE_OPS", "Decision", "Pipeline", "TableMiss"]

N_TABLES = 255
ALL_TABLES = 0xFF
MAX_DEPTH = 64
MAX_RESUBMITS = 4096
CACHE_CAPACITY = 1 << 16
OFPP_ANY = 0xFFFFFFFF
OFPG_ANY = 0xFFFFFFFF

_FULL_MASKS = {f.index: f.full_mask for f in FIELDS}


class TableMiss:
    DROP = "drop"
    CONTROLLER = "controller"
    CONTINUE = "continue"


SIDE_OPS = frozenset(("learn",))


class Decision(NamedTuple):
    """What to do with every packet of one flow key.

    `odp` are the operations on the frame; `side` the operations on switch
    state that do not touch the frame (MAC learning), replayed per packet;
    `plain` the output ports when `odp` is only outputs, so the datapath can
    send the frame as received without copying it.
    """

    odp: tuple[tuple[Any, ...], ...]
    rules: tuple[Rule, ...]
    tables: tuple[tuple[int, bool], ...]
    groups: tuple[int, ...]
    drop_reason: str | None
    cacheable: bool
    side: tuple[tuple[Any, ...], ...] = ()
    plain: tuple[int, ...] | None = None
    lengths: tuple[tuple[int, bool], ...] = ()  # check_pkt_larger's (length, larger)

    def fits(self, pkt_len: int | None) -> bool:
        """The decision holds for a frame of `pkt_len` (`context.packet_len`)."""
        n = pkt_len or 0
        return all((n > limit) == larger for limit, larger in self.lengths)


def _decision(x: XContext) -> Decision:
    ops = x.odp
    side: tuple[tuple[Any, ...], ...] = ()
    if any(op[0] in SIDE_OPS for op in ops):
        side = tuple(op for op in ops if op[0] in SIDE_OPS)
        ops = [op for op in ops if op[0] not in SIDE_OPS]
    plain = tuple(op[1] for op in ops) if all(op[0] == "output" for op in ops) else None
    return Decision(
        tuple(ops),
        tuple(x.rules),
        tuple(x.tables),
        tuple(x.groups),
        x.drop_reason,
        x.cacheable,
        side,
        plain,
        tuple(x.lengths),
    )


class Table:
    __slots__ = ("by_id", "classifier", "lookups", "matches", "miss", "name", "table_id")

    def __init__(self, table_id: int, miss: str) -> None:
        self.table_id = table_id
        self.name = f"table{table_id}"
        self.miss = miss
        self.classifier = Classifier(_FULL_MASKS)
        self.by_id: dict[tuple[Match, int], Rule] = {}
        self.lookups = 0
        self.matches = 0


class Pipeline:
    def __init__(self, n_tables: int = N_TABLES, miss: str = TableMiss.DROP) -> None:
        self.tables = [Table(i, miss) for i in range(n_tables)]
        self.groups: dict[int, GroupEntry] = {}
        self.version = 0
        self._cache: dict[Any, Decision] = {}  # by key, or by (start table, key)
        # the datapath's caches in front of this one (per ingress port, by frame
        # signature): opaque here, emptied with it
        self._signatures: dict[int, dict[Any, Any]] = {}
        self._cache_version = -1
        self.cache_hits = 0
        self.cache_misses = 0
        # standing down: the cookies of the flows that match nothing while `isolated`,
        # and the rules out of their classifier for it (still in their table's `by_id`)
        self.stand_down: frozenset[int] = frozenset()
        self.isolated = False
        self.asleep: set[Rule] = set()

    # -- configuration --------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget cached decisions (port liveness or learning state changed)."""
        self.version += 1

    def set_stand_down(self, cookies: Iterable[int]) -> None:
        """The cookies of the flows that stand down while the switch is isolated (the
        whole set; flows installed later with one of them too)."""
        self.stand_down = frozenset(cookies)
        if self.isolated or self.asleep:
            self._resettle()

    def set_isolated(self, isolated: bool) -> None:
        """Isolated: the stand-down flows match nothing; not: they match again."""
        if isolated != self.isolated:
            self.isolated = isolated
            self._resettle()

    def _sleeps(self, rule: Rule) -> bool:
        return self.isolated and rule.flow.cookie in self.stand_down

    def _file(self, t: Table, rule: Rule) -> None:
        """Put an installed rule into its classifier, or aside if it stands down."""
        if self._sleeps(rule):
            self.asleep.add(rule)
        else:
            t.classifier.insert(rule)

    def _unfile(self, t: Table, rule: Rule) -> None:
        if rule in self.asleep:
            self.asleep.discard(rule)
        else:
            t.classifier.remove(rule)

    def _resettle(self) -> None:
        """Every rule in or out of its classifier as `_sleeps` says now."""
        for t in self.tables:
            for r in t.by_id.values():
                if self._sleeps(r):
                    if r not in self.asleep:
                        t.classifier.remove(r)
                        self.asleep.add(r)
                elif r in self.asleep:
                    self.asleep.discard(r)
                    t.classifier.insert(r)
        self.version += 1

    def rules(self, table: int | None = None) -> list[Rule]:
        tables = self.tables if table is None else [self.tables[table]]
        out = [r for t in tables for r in t.by_id.values()]
        out.sort(key=lambda r: (r.flow.table, -r.priority))
        return out

    def add_flows(self, flows: Iterable[Flow], now: float = 0.0) -> None:
        self.commit([FlowMod(FlowModCommand.ADD, f) for f in flows], now=now)

    def commit(self, mods: Sequence[FlowMod | GroupMod], now: float = 0.0) -> list[Rule]:
        """Apply a batch atomically.  Returns the rules it removed.

        Everything is validated first against the state the batch would produce;
        on error (PipelineError) nothing has changed.
        """
        group_ids = set(self.groups)
        for mod in mods:
            if isinstance(mod, GroupMod):
                self._check_group_mod(mod, group_ids)
        for mod in mods:
            if isinstance(mod, FlowMod):
                self._check_flow_mod(mod, group_ids)
        removed: list[Rule] = []
        for mod in mods:
            if isinstance(mod, GroupMod):
                removed += self._apply_group_mod(mod)
            else:
                removed += self._apply_flow_mod(mod, now)
        self.version += 1
        return removed

    def _check_flow_mod(self, mod: FlowMod, group_ids: set[int]) -> None:
        f = mod.flow
        deleting = mod.command in (FlowModCommand.DELETE, FlowModCommand.DELETE_STRICT)
        if not (0 <= f.table < len(self.tables) or (deleting and f.table == ALL_TABLES)):
            raise PipelineError(ErrorKind.BAD_TABLE_ID, f"table {f.table} does not exist")
        if deleting:
            return
        goto = f.instructions.goto
        if goto is not None and not (f.table < goto < len(self.tables)):
            raise PipelineError(
                ErrorKind.BAD_GOTO,
                f"goto_table:{goto} from table {f.table}: must go to a later table",
            )
        _check_conjunctions(f)
        for a in (*f.instructions.apply, *f.instructions.write):
            if isinstance(a, Group) and a.group_id not in group_ids:
                raise PipelineError(ErrorKind.BAD_OUT_GROUP, f"group:{a.group_id} does not exist")
        if mod.command == FlowModCommand.ADD and f.flags & OFPFF_CHECK_OVERLAP:
            for r in self.tables[f.table].by_id.values():
                if (
                    r.priority == f.priority
                    and _overlap(r.flow.match, f.match)
                    and r.flow.match != f.match
                ):
                    raise PipelineError(
                        ErrorKind.OVERLAP, f"overlaps a flow of priority {f.priority}"
                    )

    def _check_group_mod(self, mod: GroupMod, group_ids: set[int]) -> None:
        g = mod.group
        gid = g.group_id
        if mod.command == GroupModCommand.DELETE:
            group_ids.discard(gid)
            return
        if gid > 0xFFFFFF00:
            raise PipelineError(ErrorKind.INVALID_GROUP, f"group id {gid:#x} is reserved")
        if mod.command == GroupModCommand.ADD and gid in group_ids:
            raise PipelineError(ErrorKind.GROUP_EXISTS, f"group {gid} already exists")
        if mod.command == GroupModCommand.MODIFY and gid not in group_ids:
            raise PipelineError(ErrorKind.UNKNOWN_GROUP, f"group {gid} does not exist")
        if g.type == GroupType.INDIRECT and len(g.buckets) != 1:
            raise PipelineError(
                ErrorKind.BAD_BUCKET, f"indirect group {gid} needs exactly one bucket"
            )
        for b in g.buckets:
            if (
                g.type == GroupType.FAST_FAILOVER
                and b.watch_port == OFPP_ANY
                and b.watch_group == OFPG_ANY
            ):
                raise PipelineError(
                    ErrorKind.BAD_BUCKET, f"fast-failover group {gid}: bucket needs watch_port"
                )
            for a in b.actions:
                if isinstance(a, Group):
                    if a.group_id == gid:
                        raise PipelineError(ErrorKind.LOOP, f"group {gid} refers to itself")
                    if a.group_id not in group_ids:
                        raise PipelineError(
                            ErrorKind.BAD_OUT_GROUP, f"group:{a.group_id} does not exist"
                        )
        group_ids.add(gid)

    def _apply_group_mod(self, mod: GroupMod) -> list[Rule]:
        gid = mod.group.group_id
        if mod.command == GroupModCommand.DELETE:
            ids = list(self.groups) if gid == OFPG_ANY - 3 else [gid]  # OFPG_ALL
            removed: list[Rule] = []
            for g in ids:
                if self.groups.pop(g, None) is not None:
                    # OpenFlow: deleting a group deletes the flows that forward to it
                    removed += self._apply_flow_mod(
                        FlowMod(FlowModCommand.DELETE, Flow(table=ALL_TABLES), out_group=g), 0.0
                    )
            return removed
        self.groups[gid] = GroupEntry(mod.group)
        return []

    def _apply_flow_mod(self, mod: FlowMod, now: float) -> list[Rule]:
        f = mod.flow
        cmd = mod.command
        if cmd == FlowModCommand.ADD:
            t = self.tables[f.table]
            ident = (f.match, f.priority)
            old = t.by_id.pop(ident, None)
            if old is not None:
                self._unfile(t, old)
            rule = Rule(f, now)
            t.by_id[ident] = rule
            self._file(t, rule)
            return []
        strict = cmd in (FlowModCommand.MODIFY_STRICT, FlowModCommand.DELETE_STRICT)
        targets = self.select(mod, strict)
        if cmd in (FlowModCommand.MODIFY, FlowModCommand.MODIFY_STRICT):
            for r in targets:
                new_flow = r.flow.with_(instructions=f.instructions, cookie=r.flow.cookie)
                r.flow = new_flow
                r.instructions = new_flow.instructions
                if r not in self.asleep:  # one standing down is refreshed as it wakes
                    self.tables[r.flow.table].classifier.refresh(r)  # a clause or not, now
                if mod.reset_counts:
                    r.packet_count = r.byte_count = 0
            return []
        for r in targets:
            t = self.tables[r.flow.table]
            del t.by_id[(r.flow.match, r.priority)]
            self._unfile(t, r)
        return targets

    def select(self, mod: FlowMod, strict: bool = False) -> list[Rule]:
        f = mod.flow
        tables = self.tables if f.table == ALL_TABLES else [self.tables[f.table]]
        out = []
        for t in tables:
            if strict:
                r = t.by_id.get((f.match, f.priority))
                cands = [r] if r is not None else []
            else:
                cands = [r for r in t.by_id.values() if f.match.covers(r.flow.match)]
            for r in cands:
                if mod.cookie_mask and (r.flow.cookie & mod.cookie_mask) != (
                    f.cookie & mod.cookie_mask
                ):
                    continue
                if mod.out_port != OFPP_ANY and not _outputs_to(r.flow, mod.out_port):
                    continue
                if mod.out_group != OFPG_ANY and not _uses_group(r.flow, mod.out_group):
                    continue
                out.append(r)
        return out

    def expire(self, now: float) -> list[tuple[Rule, str]]:
        """Remove flows whose idle or hard timeout has passed; returns (rule, reason)."""
        gone: list[tuple[Rule, str]] = []
        for t in self.tables:
            for r in list(t.by_id.values()):
                fl = r.flow
                reason = None
                if fl.hard_timeout and now - r.created >= fl.hard_timeout:
                    reason = "hard_timeout"
                elif fl.idle_timeout and now - r.used >= fl.idle_timeout:
                    reason = "idle_timeout"
                if reason:
                    del t.by_id[(fl.match, r.priority)]
                    self._unfile(t, r)
                    gone.append((r, reason))
        if gone:
            self.version += 1
        return gone

    # -- forwarding -------------------------------------------------------------------
    def _fresh(self) -> None:
        """Empty every cached decision if the version moved: the one check for both
        caches, so neither can outlive a change the other saw."""
        if self._cache_version != self.version:
            self._cache.clear()
            self._signatures.clear()
            self._cache_version = self.version

    def signatures(self, port: int) -> dict[Any, Any]:
        """The datapath's cache for frames from `port`, valid for this version."""
        if self._cache_version != self.version:
            self._fresh()
        cache = self._signatures.get(port)
        if cache is None:
            cache = self._signatures[port] = {}
        return cache

    def signature_entries(self) -> int:
        self._fresh()
        return sum(len(c) for c in self._signatures.values())

    def decide(
        self, key: tuple[int, ...], hooks: Hooks, table: int = 0, pkt_len: int | None = None
    ) -> Decision:
        """Cached translation: the datapath's entry point.  A recirculated packet
        (`ct(table=N)`) starts at `table`; its key holds the connection's state,
        zone, mark and label, so those are part of what the decision is cached by."""
        if self._cache_version != self.version:
            self._fresh()
        at: Any = key if not table else (table, key)
        d = self._cache.get(at)
        if d is not None and (not d.lengths or d.fits(pkt_len)):
            self.cache_hits += 1
            return d
        self.cache_misses += 1
        d = self.translate(key, hooks, None, table, pkt_len)
        if d.cacheable:
            if len(self._cache) >= CACHE_CAPACITY:
                self._cache.pop(next(iter(self._cache)))
            self._cache[at] = d
        return d

    def account(self, d: Decision, nbytes: int, now: float, packets: int = 1) -> None:
        """Charge `packets` packets, `nbytes` in all, last seen at `now`, to the rules,
        tables and groups of `d` (charges may arrive late, never making a rule's last
        use older)."""
        for r in d.rules:
            r.packet_count += packets
            r.byte_count += nbytes
            if now > r.used:
                r.used = now
        tables = self.tables
        for tid, matched in d.tables:
            t = tables[tid]
            t.lookups += packets
            if matched:
                t.matches += packets
        for gid in d.groups:
            g = self.groups.get(gid)
            if g is not None:
                g.packet_count += packets
                g.byte_count += nbytes

    def translate(
        self,
        key: Sequence[int],
        hooks: Hooks | None = None,
        tracer: Tracer | None = None,
        table: int = 0,
        pkt_len: int | None = None,
    ) -> Decision:
        x = XContext(key, self, hooks or NullHooks(), tracer, pkt_len)
        nxt: int | None = table
        while nxt is not None and not x.halted:
            nxt = self._run_table(x, nxt, resubmitted=False)
        if not x.halted and x.action_set:
            self._run_action_set(x)
        if x.drop_reason is None and not any(op[0] not in SIDE_OPS for op in x.odp):
            x.drop_reason = "no_output"
        if tracer is not None:
            tracer.finish(x)
        return _decision(x)

    def execute(
        self,
        key: Sequence[int],
        actions: Sequence[Action],
        hooks: Hooks | None = None,
        tracer: Tracer | None = None,
        pkt_len: int | None = None,
    ) -> Decision:
        """Run an action list outside any table (OpenFlow PACKET_OUT)."""
        x = XContext(key, self, hooks or NullHooks(), tracer, pkt_len)
        self.run_actions(x, actions)
        if x.drop_reason is None and not any(op[0] not in SIDE_OPS for op in x.odp):
            x.drop_reason = "no_output"
        if tracer is not None:
            tracer.finish(x)
        return _decision(x)

    def _run_table(self, x: XContext, table_id: int, resubmitted: bool) -> int | None:
        t = self.tables[table_id]
        tr = x.tracer
        if tr is None:
            rule = t.classifier.lookup(x.fields)
        else:
            rule, conj = t.classifier.lookup_explained(x.fields)
        x.table_id = table_id
        if tr is not None:
            tr.table(table_id, rule, x.fields, conj)
        if rule is None:
            x.tables.append((table_id, False))
            nxt: int | None = None
            if resubmitted:
                x.note("no match")
            elif t.miss == TableMiss.CONTINUE and table_id + 1 < len(self.tables):
                x.note(f"no match: continue to table {table_id + 1}")
                nxt = table_id + 1
            elif t.miss == TableMiss.CONTROLLER:
                x.note("no match: send to controller")
                x.emit(("controller", "no_match", 0xFFFF, table_id, 0))
            else:
                x.halt("no_match")
            if tr is not None:
                tr.end_table()
            return nxt
        x.tables.append((table_id, True))
        x.rules.append(rule)
        x.cookie = rule.flow.cookie
        ins = rule.instructions
        if ins.meter is not None:
            x.emit(("meter", ins.meter))
        if ins.apply:
            self.run_actions(x, ins.apply)
        if not x.halted:
            if ins.clear:
                x.action_set.clear()
            for a in ins.write:
                x.action_set[set_key(a)] = a
            if ins.metadata is not None:
                v, m = ins.metadata
                x.fields[fk.METADATA] = (x.fields[fk.METADATA] & ~m) | (v & m)
        if tr is not None:
            if ins.write or ins.clear:
                tr.note(
                    "action set: "
                    + (",".join(a.format() for a in x.action_set.values()) or "(empty)")
                )
            if ins.goto is not None:
                tr.note(f"goto_table:{ins.goto}")
            tr.end_table()
        return None if x.halted else ins.goto

    def run_actions(self, x: XContext, actions: Sequence[Action]) -> None:
        tr = x.tracer
        if tr is None:
            for a in actions:
                a.execute(x)
                if x.halted:
                    return
            return
        for a in actions:
            tr.action_begin(a, x)
            a.execute(x)
            tr.action_end(x)
            if x.halted:
                return

    def _run_action_set(self, x: XContext) -> None:
        acts = sorted(x.action_set.values(), key=_set_order)
        if any(isinstance(a, Group) for a in acts):
            # OpenFlow 1.3: with a group in the action set, output is ignored
            acts = [a for a in acts if not isinstance(a, Output)]
        if x.tracer is not None:
            x.tracer.push("action set", "execute the action set")
        self.run_actions(x, acts)
        if x.tracer is not None:
            x.tracer.pop()

    # -- Engine protocol (used by actions) ---------------------------------------------
    def resubmit(self, x: XContext, port: int | None, table: int | None) -> None:
        if x.depth >= MAX_DEPTH or x.resubmits >= MAX_RESUBMITS:
            x.halt("resubmit_limit")
            return
        tid = x.table_id if table is None else table
        if not 0 <= tid < len(self.tables):
            x.note(f"resubmit to missing table {tid}")
            return
        saved_in_port, saved_table, saved_cookie = x.fields[fk.IN_PORT], x.table_id, x.cookie
        x.depth += 1
        x.resubmits += 1
        if port is not None:
            x.fields[fk.IN_PORT] = port
        nxt: int | None = tid
        while nxt is not None and not x.halted:
            nxt = self._run_table(x, nxt, resubmitted=True)
        x.fields[fk.IN_PORT] = saved_in_port
        x.table_id, x.cookie = saved_table, saved_cookie
        x.depth -= 1

    def run_group(self, x: XContext, group_id: int) -> None:
        g = self.groups.get(group_id)
        if g is None:
            x.note(f"group {group_id} does not exist: dropped")
            return
        if x.depth >= MAX_DEPTH:
            x.halt("resubmit_limit")
            return
        x.groups.append(group_id)
        desc = g.desc
        hooks = x.hooks
        chosen: list[int]
        if desc.type == GroupType.ALL:
            chosen = list(range(len(desc.buckets)))
        elif desc.type == GroupType.INDIRECT:
            chosen = [0] if desc.buckets else []
        elif desc.type == GroupType.FAST_FAILOVER:
            chosen = []
            for i, b in enumerate(desc.buckets):
                if self._bucket_live(b.watch_port, b.watch_group, hooks):
                    chosen = [i]
                    break
        else:
            live = [
                i
                for i, b in enumerate(desc.buckets)
                if b.weight > 0 and self._bucket_live(b.watch_port, b.watch_group, hooks)
            ]
            chosen = []
            if live:
                total = sum(desc.buckets[i].weight for i in live)
                h = select_hash(x.fields) % total
                for i in live:
                    h -= desc.buckets[i].weight
                    if h < 0:
                        chosen = [i]
                        break
        tr = x.tracer
        if tr is not None:
            tr.push("group", f"group:{group_id} ({desc.type.value}): buckets {chosen or 'none'}")
        for i in chosen:
            self._run_bucket(x, desc.buckets[i].actions, i)
        if tr is not None:
            tr.pop()

    def _bucket_live(self, port: int, group: int, hooks: Hooks) -> bool:
        if port != OFPP_ANY and not hooks.port_live(port):
            return False
        if group != OFPG_ANY:
            g = self.groups.get(group)
            if g is None:
                return False
        return True

    def _run_bucket(self, x: XContext, actions: Sequence[Action], index: int) -> None:
        # a bucket acts on a copy of the packet: run it on saved state, emit as a clone
        saved_fields, saved_odp, saved_set = x.fields, x.odp, x.action_set
        saved_halted, saved_reason = x.halted, x.drop_reason
        x.fields, x.odp, x.action_set = list(saved_fields), [], {}
        x.depth += 1
        if x.tracer is not None:
            x.tracer.push("bucket", f"bucket {index}")
        self.run_actions(x, actions)
        if x.tracer is not None:
            x.tracer.pop()
        sub = x.odp
        x.fields, x.odp, x.action_set = saved_fields, saved_odp, saved_set
        x.halted, x.drop_reason = saved_halted, saved_reason
        x.depth -= 1
        if sub:
            x.emit(("clone", tuple(sub)))


def _set_order(a: Action) -> int:
    k = set_key(a)
    return ACTION_SET_ORDER[k[0] if isinstance(k, tuple) else k]


def _check_conjunctions(f: Flow) -> None:
    """A conjunction goes only with notes (`classifier.check_clause`)."""
    try:
        check_clause(f.instructions)
    except ActionError as e:
        raise PipelineError(ErrorKind.UNSUPPORTED_ACTION, str(e)) from None


def _overlap(a: Match, b: Match) -> bool:
    bm = {i: (v, m) for i, v, m in b.items}
    for i, v, m in a.items:
        o = bm.get(i)
        if o is not None:
            v2, m2 = o
            common = m & m2
            if (v & common) != (v2 & common):
                return False
    return True


def _actions_of(f: Flow) -> Iterable[Action]:
    yield from f.instructions.apply
    yield from f.instructions.write


def _outputs_to(f: Flow, port: int) -> bool:
    return any(isinstance(a, Output) and a.port == port for a in _actions_of(f))


def _uses_group(f: Flow, group: int) -> bool:
    return any(isinstance(a, Group) and a.group_id == group for a in _actions_of(f))

"""The firewall's membership bits stay put across compiles (no renumbering window)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from vnet.compiler import Compiler
from vnet.compiler.acl import Atoms, Freed, allocate, bits
from vnet.controller.northbound import Northbound
from vnet.store import SqliteStore

ROOT = Path(__file__).resolve().parents[3]
MICROSEG: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "microseg.yaml").read_text())

A, B, C, D = ("group", "a"), ("group", "b"), ("sel", (("k", "c"),)), ("sel", (("k", "d"),))


def test_without_a_previous_allocation_the_bits_follow_the_order() -> None:
    assert allocate([A, B, C], None) == ({A: 2, B: 3, C: 4}, [])


def test_an_atom_that_stays_keeps_its_bit_and_a_new_one_takes_a_bit_never_used() -> None:
    bit, freed = allocate([D, B, C], {A: 2, B: 3, C: 4})
    assert bit == {B: 3, C: 4, D: 5}  # not 2: A's, freed by this very change
    assert freed == [Freed(2, A)]


def test_a_freed_bit_is_taken_again_last_and_oldest_first() -> None:
    full = [("group", str(i)) for i in range(2, 128)]  # every bit of the tenant
    before = {k: i for i, k in enumerate(full, 2)}
    bit, freed = allocate(full[2:], before)  # two atoms go: bits 2 and 3 freed
    assert freed == [Freed(2, full[0]), Freed(3, full[1])]
    bit, freed = allocate([*full[3:], A], bit, freed)  # another goes, one comes
    assert bit[A] == 2 and freed == [Freed(3, full[1]), Freed(4, full[2])]


def test_an_atom_back_before_its_bit_was_taken_gets_it_again() -> None:
    bit, freed = allocate([B], {A: 2, B: 3})
    bit, freed = allocate([B, D, A], bit, freed)
    assert bit == {A: 2, B: 3, D: 4} and freed == []


def _tenant_bits(comp: Compiler) -> dict[Any, int]:
    (a,) = comp.kept["acl"].values()
    assert isinstance(a, Atoms)
    return dict(a.bit)


def test_adding_or_removing_a_group_changes_no_other_atoms_bit() -> None:
    nb = Northbound(SqliteStore())
    nb.apply(copy.deepcopy(MICROSEG))
    comp = Compiler()
    comp.compile(nb.state())
    first = _tenant_bits(comp)
    new = nb.create("security_group", {"name": "aaa", "tenant": "shop", "selector": {"tier": "x"},
                                       "rules": [{"direction": "ingress", "protocol": "udp"}]})  # fmt: skip
    comp.compile(nb.state())
    second = _tenant_bits(comp)
    assert {k: v for k, v in second.items() if k in first} == first
    assert second[("group", new.id)] not in first.values()
    db = next(g for g in nb.state().all("security_group") if g.name == "db")
    nb.update("security_group", db.id, {"rules": []})  # no rule names db: its atom goes
    comp.compile(nb.state())
    third = _tenant_bits(comp)
    assert ("group", db.id) not in third
    assert third == {k: v for k, v in second.items() if k != ("group", db.id)}
    # the members of the gone atom keep its bit set while old flows may still test it
    (a,) = comp.kept["acl"].values()
    port = next(p for p in nb.state().all("port") if p.name == "db")
    assert bits(a, port) >> second[("group", db.id)] & 1
    # a scratch compile that starts from the live one's numbering agrees with it
    assert Compiler(kept=comp.kept).compile(nb.state()) == comp.compile(nb.state())


def test_a_relabel_is_compiled_from_the_last_output_as_a_full_compile_would() -> None:
    from vnet.testing.secmodel import relabel, secmodel

    state = secmodel(300, 6, 40, networks=3, chassis=4)
    comp = Compiler()
    comp.compile(state)
    for i in range(6):
        state = relabel(state, f"p{i * 37 % 300}", f"a{i % 6}")
        quick = comp.compile(state)
        assert comp.recompiled <= 3  # the port's two builders and its network's
        full = Compiler(kept=comp.kept).compile(state)
        assert [lf.flow for lf in quick] == [lf.flow for lf in full]
    # anything but ports changed: the full walk
    other = state.copy()
    other.objects["chassis"] = dict(other.objects["chassis"])
    other.objects["chassis"]["c0"] = state.get("chassis", "c0").model_copy(update={"name": "x"})
    assert comp._ports_only(other) is None and comp._ports_only(relabel(state, "p1", "a1"))

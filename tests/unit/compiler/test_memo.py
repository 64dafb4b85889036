"""Memoised compiles equal fresh ones, whatever field of the model changes."""

from __future__ import annotations

from vnet.compiler import Compiler, Memo, localize
from vnet.controller.northbound import Northbound
from vnet.pipeline.flow import Flow
from vnet.store import SqliteStore

from .test_compile import TWO_TENANTS


def _flows(nb: Northbound, comp: Compiler, memo: Memo) -> list[Flow]:
    st = nb.state()
    ch = st.all("chassis")[0]
    ofports = {p.iface: i for i, p in enumerate(st.all("port"), 1)}
    return localize(comp.compile(st), st, ch, ofports, memo)


def _fresh(nb: Northbound) -> list[Flow]:
    return _flows(nb, Compiler(), {})


def _same(a: list[Flow], b: list[Flow]) -> None:
    assert [(f, f.origin) for f in a] == [(f, f.origin) for f in b]


def test_renaming_the_chassis_or_a_port_rebuilds_their_bindings() -> None:
    nb = Northbound(SqliteStore())
    nb.apply(TWO_TENANTS)
    comp, memo = Compiler(), Memo()
    _flows(nb, comp, memo)
    nb.update("chassis", "hv1", {"name": "hv9"})
    _same(_flows(nb, comp, memo), _fresh(nb))
    nb.update("port", nb.get("port", "blue1", "blue").id, {"name": "blue9"})
    _same(_flows(nb, comp, memo), _fresh(nb))

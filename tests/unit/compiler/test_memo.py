"""Memoised compiles equal fresh ones, whatever field of the model changes."""

from __future__ import annotations

from typing import Any

import pytest

from vnet.compiler import Compiler, Memo, localize, logical
from vnet.controller.northbound import Northbound
from vnet.model import State
from vnet.model.objects import Network, Port
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


# a different valid value for each field a builder may read (a property: for what it reads)
_IPS = {"fixed_ips": [{"ip": "10.0.0.99"}, {"ip": "fd00::99"}]}
OTHER: dict[str, dict[str, dict[str, Any]]] = {
    "port": {
        "description": {"description": "quarantine"},
        "name": {"name": "renamed"},
        "mac": {"mac": "02:00:00:00:00:99"},
        "fixed_ips": _IPS,
        "ips": _IPS,
        "port_security": {"port_security": False},
        "allowed_address_pairs": {
            "allowed_address_pairs": [{"ip": "10.0.0.50", "mac": "02:00:00:00:00:50"}]
        },
        "admin_up": {"admin_up": False},
        "tunnel_key": {"tunnel_key": 99},
    },
    "network": {
        "name": {"name": "renamed"},
        "segment_id": {"segment_id": 99},
        "admin_up": {"admin_up": False},
    },
}


def _state() -> tuple[State, Port]:
    nb = Northbound(SqliteStore())
    nb.apply(TWO_TENANTS)
    st = nb.state()
    return st, next(p for p in st.all("port") if p.name == "blue1")


def _changed(st: State, obj: Any, field: str) -> State:
    st = st.apply([])
    st.objects[obj.kind] = {**st.objects[obj.kind], obj.id: obj.changed(**OTHER[obj.kind][field])}
    return st


def test_changing_any_field_a_builder_read_recompiles_and_equals_a_fresh_compile() -> None:
    st, port = _state()
    net = st.get("network", port.network)
    comp = Compiler()
    comp.compile(st)
    entry = comp._memo[("port", port.id)]
    read = {"network": set(entry.reads[0]) - {"id"}, "port": set(entry.reads[1]) - {"id"}}
    # what the builders read was recorded as they read it, not listed by hand
    assert {"tunnel_key", "mac", "ips", "admin_up"} <= read["port"]
    assert {"segment_id", "admin_up"} <= read["network"]
    for kind, obj in (("port", port), ("network", net)):
        for field in sorted(read[kind]):
            comp = Compiler()
            comp.compile(st)
            after = _changed(st, obj, field)
            got = comp.compile(after)
            assert comp.recompiled >= 1, f"{kind}.{field}"
            assert [(lf.flow, lf.flow.origin) for lf in got] == [
                (lf.flow, lf.flow.origin) for lf in Compiler().compile(after)
            ], f"{kind}.{field}"


def test_a_builder_reading_a_new_field_needs_no_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logical, "_PORT", list(logical._PORT))

    @logical.port_stage("ls_in_l2_lkup")
    def described(e: Any, net: Network, port: Port) -> None:
        if port.description == "quarantine":
            e(200, "quarantined", {"eth_src": (0, 0)})

    st, port = _state()
    comp = Compiler()
    comp.compile(st)
    after = _changed(st, port, "description")
    assert comp.compile(after) == Compiler().compile(after)
    assert comp.recompiled == 1
    assert any(lf.rule == "quarantined" for lf in comp.compile(after))

"""The compiled flows of each example topology, per chassis, as reviewable text.

Each file under `compiled/<topology>/<chassis>.flows` is what the controller
would install on that chassis, in ovs-ofctl syntax with stage names in place
of table numbers (renumbering a stage changes nothing here; a flow that moves
to another stage does) and each flow's provenance after it, ids left out.
Object ids (and the MACs derived from them) are drawn from a seeded sequence
so the text is the same on every run.  A compiler change that means to change
flows regenerates the files (`VNET_GOLDEN_UPDATE=1 pytest tests/golden`) and
the diff of the files is the review of the change.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from vnet.compiler import Compiler, localize
from vnet.compiler.stages import stage_of
from vnet.controller.northbound import Northbound
from vnet.lab.topology import model_part
from vnet.model.objects import ENCAPS, tunnel_iface
from vnet.pipeline.flow import Flow
from vnet.pipeline.ofctl import format_flow
from vnet.store import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
GOLDEN = Path(__file__).parent / "compiled"
UPDATE = os.environ.get("VNET_GOLDEN_UPDATE") == "1"


def _named(text: str) -> str:
    """Table numbers in a flow's text -> stage names."""
    text = re.sub(r"^table=(\d+),", lambda m: f"table={stage_of(int(m[1]))},", text)
    text = re.sub(r"goto_table:(\d+)", lambda m: f"goto_table:{stage_of(int(m[1]))}", text)
    text = re.sub(
        r"resubmit\(([^,()]*),(\d+)\)", lambda m: f"resubmit({m[1]},{stage_of(int(m[2]))})", text
    )
    return re.sub(r"\btable=(\d+)", lambda m: f"table={stage_of(int(m[1]))}", text)


_ID = re.compile(r" \([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\)")


def render(flows: list[Flow]) -> str:
    lines = []
    for f in flows:
        text = re.sub(r"cookie=0x[0-9a-f]+,", "", format_flow(f))
        lines.append(f"{_named(text)}\n    # {_ID.sub('', f.origin)}")
    return "\n".join(lines) + "\n"


def compiled(path: Path) -> dict[str, str]:
    """Chassis name -> its flows as text, for the topology in `path`."""
    seq = itertools.count(1)

    def seeded() -> uuid.UUID:
        return uuid.UUID(bytes=hashlib.sha256(f"{next(seq)}".encode()).digest()[:16])

    lab: dict[str, Any] = yaml.safe_load(path.read_text())
    # what the lab fills in or keeps to itself: uplinks, the outside, the addressing
    doc = model_part(lab)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(uuid, "uuid4", seeded)
        nb = Northbound(SqliteStore())
        nb.apply(doc)
    state = nb.state()
    lflows = Compiler().compile(state)
    out = {}
    for ch in sorted(state.all("chassis"), key=lambda c: c.name):
        bound = sorted((p for p in state.all("port") if p.chassis == ch.id), key=lambda p: p.name)
        ofports = {p.iface: i for i, p in enumerate(bound, 1)}
        ofports |= {tunnel_iface(k): 100 + i for i, k in enumerate(ENCAPS)}
        out[ch.name] = render(localize(lflows, state, ch, ofports))
    return out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_compiled_flows_are_the_golden_ones(path: Path) -> None:
    got = compiled(path)
    where = GOLDEN / path.stem
    if UPDATE:
        where.mkdir(parents=True, exist_ok=True)
        for old in where.glob("*.flows"):
            old.unlink()
        for name, text in got.items():
            (where / f"{name}.flows").write_text(text)
    want = {p.stem: p.read_text() for p in sorted(where.glob("*.flows"))}
    assert sorted(want) == sorted(got), f"{path.stem}: chassis differ"
    for name, text in got.items():
        assert text == want[name], f"{path.stem}/{name}: compiled flows differ from the golden file"

"""`vnet verify -f FILE`: the reachability matrix of a model file, proved on its flows.

Compiles the file's model as the controller would, runs every chassis' flows
in this process (`lab.verify`) and prints, per tenant, each pair of port
classes and service class with the verdict the model intends and what the
flows did; then every disagreement.  Exits 1 on any.  `--tenant` keeps one
tenant, `--from`/`--to` the cells whose classes hold those ports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from ..controller.northbound import Northbound
from ..lab.verify import check
from ..model.rules import ModelError
from ..store import SqliteStore
from .common import fail, out

__all__ = ["register_verify"]


def register_verify(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_cmd(
        file: Annotated[Path, typer.Option("-f", "--file", help="A model file (as `apply -f`).")],
        tenant: Annotated[str | None, typer.Option("--tenant", help="One tenant, by name.")] = None,
        src: Annotated[
            str | None, typer.Option("--from", help="Cells from this port's class.")
        ] = None,
        dst: Annotated[str | None, typer.Option("--to", help="Cells to this port's class.")] = None,
    ) -> None:
        """Prove the firewall: intended verdicts against the compiled flows'."""
        try:
            doc = yaml.safe_load(file.read_text())
            nb = Northbound(SqliteStore())
            nb.apply(doc)
        except (OSError, yaml.YAMLError, ModelError) as e:
            fail(f"{file}: {e}")
        state = nb.state()
        tid = None
        if tenant is not None:
            t = state.find("tenant", tenant)
            if t is None:
                fail(f"--tenant: no tenant {tenant!r}")
            tid = t.id
        report = check(state, tid)
        shown = 0
        for cell, got in report.cells:
            if src is not None and src not in {p.name for p in cell.src.ports}:
                continue
            if dst is not None and dst not in {p.name for p in cell.dst.ports}:
                continue
            shown += 1
            want = cell.verdict
            mark = "" if (want.action == "allow") == (got.action == "allow") else "  <-- differs"
            out.print(f"{cell.src} -> {cell.dst} {cell.service}: {want.action} "
                          f"({want.reason}); flows: {got.action}{mark}", markup=False)  # fmt: skip
        for d in report.disagreements:
            out.print(f"DISAGREE {d}", markup=False)
        out.print(f"{shown} cells, {len(report.disagreements)} disagreements, "
                      f"{len(report.untried)} untried", markup=False)  # fmt: skip
        if report.disagreements:
            raise typer.Exit(1)

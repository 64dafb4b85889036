"""`vnet verify [-f FILE]`: the reachability matrix, proved on the compiled flows.

With `-f FILE`: compiles the file's model as the controller would and runs
every chassis' flows in this process (`lab.verify`).  Without: the same check
on the running controller's current model, through its API (`GET /v1/verify`,
the SDK's `Client.verify`; `--api`, else the lab that is up, else the default,
as `vnet get` finds it).  Prints, per tenant, each pair of port classes and
service class with the verdict the model intends and what the flows did;
then every disagreement.  Exits 1 on any.  `--tenant` keeps one tenant,
`--from`/`--to` the cells whose classes hold those ports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from ..api.app import verify_json
from ..client import ApiError
from ..controller.northbound import Northbound
from ..lab.verify import check
from ..model.rules import ModelError
from ..store import SqliteStore
from .common import fail, out
from .controller import ApiOpt, _api_fail, _client

__all__ = ["register_verify"]


def _from_file(file: Path, tenant: str | None, src: str | None, dst: str | None) -> dict[str, Any]:
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
    return verify_json(check(state, tid), src, dst)


def register_verify(app: typer.Typer) -> None:
    @app.command("verify")
    def verify_cmd(
        file: Annotated[
            Path | None,
            typer.Option(
                "-f", "--file", help="A model file (as `apply -f`); else the controller's model."
            ),
        ] = None,
        tenant: Annotated[str | None, typer.Option("--tenant", help="One tenant, by name.")] = None,
        src: Annotated[
            str | None, typer.Option("--from", help="Cells from this port's class.")
        ] = None,
        dst: Annotated[str | None, typer.Option("--to", help="Cells to this port's class.")] = None,
        api: ApiOpt = None,
    ) -> None:
        """Prove the firewall: intended verdicts against the compiled flows'."""
        if file is not None:
            res = _from_file(file, tenant, src, dst)
        else:
            try:
                with _client(api) as c:
                    res = c.verify(tenant, src, dst)
            except ApiError as e:
                _api_fail(e)
        for cell in res["cells"]:
            mark = "" if cell["agrees"] else "  <-- differs"
            out.print(f"{cell['from']} -> {cell['to']} {cell['service']}: {cell['intended']} "
                      f"({cell['reason']}); flows: {cell['flows']}{mark}", markup=False)  # fmt: skip
        for d in res["disagreements"]:
            out.print(f"DISAGREE {d}", markup=False)
        out.print(f"{len(res['cells'])} cells, {len(res['disagreements'])} disagreements, "
                  f"{res['untried']} untried", markup=False)  # fmt: skip
        if res["disagreements"]:
            raise typer.Exit(1)

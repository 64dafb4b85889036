"""`vnet verify -f FILE`: the matrix of a model file proved on its compiled flows."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vnet.cli.main import app
from vnet.compiler import logical

MICROSEG = str(Path(__file__).resolve().parents[2] / "examples" / "microseg.yaml")


def test_verify_prints_the_matrix_and_agrees() -> None:
    r = CliRunner().invoke(app, ["verify", "-f", MICROSEG, "--from", "client", "--to", "db"])
    assert r.exit_code == 0, r.output
    assert "client -> db tcp/5432 (IPv4): reject" in r.output and "flows: reject" in r.output
    assert "0 disagreements" in r.output


def test_verify_exits_1_on_a_disagreement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logical, "_FEATURES", [])  # flows without the firewall
    r = CliRunner().invoke(app, ["verify", "-f", MICROSEG])
    assert r.exit_code == 1
    assert "DISAGREE client -> db" in r.output


def test_verify_names_a_missing_tenant() -> None:
    r = CliRunner().invoke(app, ["verify", "-f", MICROSEG, "--tenant", "nope"])
    assert r.exit_code == 2 and "--tenant" in r.output

"""The package's metadata: what setuptools reads from pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_license_is_an_spdx_expression_with_a_setuptools_that_reads_it() -> None:
    doc = tomllib.loads(PYPROJECT.read_text())
    # a TOML table is deprecated (PEP 639): setuptools warns on every build
    assert doc["project"]["license"] == "Apache-2.0"
    req = next(r for r in doc["build-system"]["requires"] if r.startswith("setuptools"))
    m = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", req)
    assert m is not None and int(m.group(1)) >= 77, req  # the first to read SPDX strings

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.etcd_rig import EtcdCluster
from vnet.store import SqliteStore, Store
from vnet.store.etcd import EtcdStore


@pytest.fixture(params=["sqlite", pytest.param("etcd", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each store the interface has: SQLite (log kept 50 commits), and etcd (a prefix of its own)."""
    s: Store
    if request.param == "sqlite":
        s = SqliteStore(tmp_path / "v.db", keep=50)
    else:
        server: EtcdCluster = request.getfixturevalue("etcd_server")
        s = EtcdStore(server.endpoints, prefix=f"/test-{uuid.uuid4().hex[:12]}/")
    try:
        yield s
    finally:
        s.close()

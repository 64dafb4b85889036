"""What the API tests share: an SDK client on an in-process controller, and the refusal check."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vnet.api import create_app
from vnet.client import ApiError, Client
from vnet.controller.service import Controller
from vnet.store import SqliteStore


@contextlib.contextmanager
def client(doc: dict[str, Any] | None = None) -> Iterator[Client]:
    """The SDK over an in-process ASGI transport to a fresh controller, `doc` applied."""
    ctl = Controller(SqliteStore())
    with TestClient(create_app(ctl)) as http:
        c = Client("http://testserver", http=http)
        if doc is not None:
            c.apply(doc)
        yield c


def refused(api: Client, status: int, fn: Any, *args: Any, **kw: Any) -> ApiError:
    """`fn(*args, **kw)` is answered `status` and nothing is stored (the revision stays)."""
    before = api.status()["revision"]
    with pytest.raises(ApiError) as e:
        fn(*args, **kw)
    assert e.value.status == status, e.value
    assert api.status()["revision"] == before  # nothing changed
    return e.value

"""What the model tests share: the refusal check."""

from __future__ import annotations

from typing import Any

import pytest

from vnet.controller.northbound import Northbound
from vnet.model import ModelError


def refused(nb: Northbound, fn: Any, *args: Any, **kw: Any) -> ModelError:
    """`fn(*args, **kw)` raises a ModelError and the store is as it was."""
    before = nb.store.snapshot()
    with pytest.raises(ModelError) as e:
        fn(*args, **kw)
    assert nb.store.snapshot() == before  # nothing changed
    return e.value

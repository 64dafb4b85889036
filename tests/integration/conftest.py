from __future__ import annotations

from collections.abc import Iterator

import pytest

from vnet.testing.netns import Lab


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A lab of namespaces and processes, all gone when the test ends (failed or not)."""
    with Lab() as lab:
        yield lab

"""What the controller tests share: waiting for a condition in the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Return once `cond()` holds, polling every 20 ms; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")

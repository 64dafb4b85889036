"""Shared timing helper for the benchmarks: best of several repeats (noise only adds time)."""

from __future__ import annotations

import time
from collections.abc import Callable


def per_call_us(fn: Callable[[], object], number: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / number * 1e6

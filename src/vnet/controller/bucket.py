"""A token bucket: how the controller limits what it sends in answer to punts.

`rate` tokens a second, at most `burst` kept; `take(now)` spends one if there
is one.  The clock is the caller's, so tests drive it.
"""

from __future__ import annotations

__all__ = ["Bucket"]


class Bucket:
    """A token bucket: `rate` tokens a second, at most `burst` kept."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.filled = self.burst, now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.filled) * self.rate)
        self.filled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

"""Token-bucket rate limits per API key and per client IP."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second up to `burst`; each request takes one."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now


class RateLimiter:
    """A bucket per key, created on first use; idle full buckets are forgotten."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self.buckets: dict[str, TokenBucket] = {}
        self.refused = 0

    def check(self, key: str, cost: float = 1.0) -> float:
        """0 if the request may go ahead (taking `cost` tokens: a batch costs one per
        request in it), else the seconds to wait before retrying."""
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.max_keys:
                self._forget_idle(now)
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        # TokenBucket.take, inlined: this runs for every request and message.
        tokens = bucket.tokens + (now - bucket.stamp) * bucket.rate
        if tokens > bucket.burst:
            tokens = bucket.burst
        bucket.stamp = now
        if tokens >= cost:
            bucket.tokens = tokens - cost
            return 0.0
        bucket.tokens = tokens
        self.refused += 1
        return (min(cost, bucket.burst) - tokens) / bucket.rate

    def _forget_idle(self, now: float) -> None:
        refill = self.burst / self.rate
        for key in [k for k, b in self.buckets.items() if now - b.stamp > refill]:
            del self.buckets[key]

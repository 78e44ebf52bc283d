"""A histogram cheap enough for hot paths (the journal's fsyncs, the actors' latencies).

Standard library only, so the actors do not pull in a metrics library; the gateway exports
these to Prometheus at scrape time (`lobgw.gateway.metrics`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence


class FastHistogram:
    """Bucket counts kept with one bisect per sample.

    aioprometheus resolves label dicts on every observation, which costs more than the
    command being measured; this keeps the hot path to a few operations.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one sample (le semantics: a value equal to a bound falls in that bucket)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, samples at or below it) per bucket, the last bound infinite."""
        result = []
        running = 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += count
            result.append((bound, running))
        return result

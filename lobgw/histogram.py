"""A histogram cheap enough for hot paths, exported to aioprometheus at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from aioprometheus.histogram import Histogram as HistogramValue


class FastHistogram:
    """Bucket counts kept with one bisect per sample; exported to aioprometheus at scrape.

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

    def export(self) -> HistogramValue:
        """The cumulative aioprometheus histogram value."""
        value = HistogramValue(*self.bounds)
        cumulative = 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            cumulative += count
            value.buckets[bound] = cumulative
        value.observations = cumulative
        value.sum = self.total
        return value

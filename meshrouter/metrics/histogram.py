"""Theory of operation: a fixed-bucket histogram fed from the datapath's apply log.

The OVS datapath keeps its last few applies (``status()["recent_applies"]``,
each a new dict with ``ms``).  At every scrape (and every route computation,
so a burst between scrapes is not lost) ``ApplyLog.feed`` takes the entries it
has not seen -- by object identity, since equal timings are distinct applies --
and adds them to the buckets.  Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Seconds: a delta of a few flows is milliseconds; a 10k-flow replace is ~1 s.
BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                              2.5, 5.0, 10.0, float("inf"))
SEEN_KEPT = 64


class ApplyLog:
    """Bucket counts and sum of flow-apply durations (seconds)."""

    def __init__(self) -> None:
        self.counts = [0] * len(BUCKETS)
        self.total = 0.0
        self.count = 0
        self._seen: list[Mapping[str, Any]] = []

    def observe(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        index = next(i for i, bound in enumerate(BUCKETS) if seconds <= bound)
        self.counts[index] += 1
        self.total += seconds
        self.count += 1

    def feed(self, applies: Iterable[Any]) -> int:
        """Observe the entries of ``applies`` not seen before; return how many."""
        fresh = 0
        for entry in applies:
            if not isinstance(entry, Mapping) or any(entry is seen for seen in self._seen):
                continue
            self._seen.append(entry)
            milliseconds = entry.get("ms")
            if isinstance(milliseconds, int | float):
                self.observe(float(milliseconds) / 1000.0)
                fresh += 1
        del self._seen[:-SEEN_KEPT]
        return fresh

    def buckets(self) -> list[tuple[float, int]]:
        """(upper bound, hits in this bucket alone) pairs, ``+Inf`` last."""
        return list(zip(BUCKETS, self.counts, strict=True))

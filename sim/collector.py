"""The garbage collector's settings while a simulation runs (the simulator's, never
the product's).

A simulated mesh is millions of long-lived objects (records, route arrays,
connection state) and a torrent of short-lived ones (messages, trio's wakeups).
With CPython's default thresholds (700, 10, 10) the young generation is collected
every 700 net allocations and its survivors -- mostly objects that live for the
whole run -- are scanned again in the middle generation; a 100-peer join spent
about a sixth of its time in the collector.  ``relaxed`` raises the thresholds for
the run: the young generation is collected every 100,000 net allocations, the
older ones far more rarely.  Garbage cycles (trio's cancellations make some)
are still collected, in larger batches; they are so few that a 100-peer join
with the collector switched off peaked at the same RSS (CPU 64-67 s -> 56 s,
time in the collector about 16 % -> 1.5 % of the run).  ``python -m sim ...
--gc python`` runs with the interpreter's settings, for comparison.

The previous settings are restored when the run ends, so a test or a bench that
runs a simulation leaves the interpreter as it found it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

COLLECTORS: dict[str, tuple[int, int, int] | None] = {
    "relaxed": (100_000, 50, 100),
    "python": None,  # the interpreter's settings, untouched
}


@contextmanager
def collector(name: str) -> Iterator[None]:
    """Run the body with the named collector settings (see ``COLLECTORS``)."""
    if name not in COLLECTORS:
        raise ValueError(f"unknown collector setting {name!r}; choose from {sorted(COLLECTORS)}")
    thresholds = COLLECTORS[name]
    saved = gc.get_threshold()
    if thresholds is not None:
        gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*saved)

"""Theory of operation: the redial schedule for one target.

Weave's schedule, kept because it is well tested in the field: after the n-th
failure the base interval is ``initial * factor**n`` capped at ``maximum``, and the
actual delay is drawn uniformly from [base/2, 3*base/2) so that a mesh restarting
at once does not redial in lock step.  A connection that lived longer than
``reset_after`` proves the target healthy, so the schedule starts again from the
initial interval.  Time and randomness are arguments.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Parameters of the schedule; defaults are Weave's."""

    initial: float = 2.0
    factor: float = 1.5
    maximum: float = 360.0
    reset_after: float = 60.0

    def base_interval(self, failures: int) -> float:
        """Un-jittered interval after ``failures`` consecutive failures (>= 1)."""
        interval = self.initial
        for _ in range(max(0, failures - 1)):
            interval *= self.factor
            if interval >= self.maximum:
                return self.maximum
        return min(interval, self.maximum)

    def delay(self, failures: int, rng: random.Random) -> float:
        """Jittered delay: uniform in [base/2, 3*base/2)."""
        base = self.base_interval(failures)
        return base / 2 + rng.random() * base

"""Theory of operation: a token bucket for accepting connections.

A storm of inbound connections (a whole mesh restarting, or a hostile client)
must not starve the router.  Like Weave, we hold up to ``capacity`` tokens and
regain one every ``refill_interval`` seconds; an accept spends one token, and
when none is left the caller waits ``wait_time(now)`` before accepting again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_EPSILON = 1e-9
_MIN_WAIT = 1e-6


@dataclass(slots=True)
class TokenBucket:
    """Token bucket driven by an explicit clock value ``now``."""

    capacity: int = 20
    refill_interval: float = 0.05
    _tokens: float = field(init=False)
    _last: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._tokens = float(self.capacity)

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            gained = (now - self._last) / self.refill_interval
            self._tokens = min(float(self.capacity), self._tokens + gained)
        if self._last is None or now > self._last:
            self._last = now

    def try_take(self, now: float) -> bool:
        """Spend one token if available; return whether it was."""
        self._refill(now)
        if self._tokens >= 1.0 - _EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def wait_time(self, now: float) -> float:
        """Seconds until one token is available (0 if one is now)."""
        self._refill(now)
        if self._tokens >= 1.0 - _EPSILON:
            return 0.0
        # Never shorter than a microsecond: a wait that rounds away against a
        # large clock value would let a caller spin without time advancing.
        return max(_MIN_WAIT, (1.0 - self._tokens) * self.refill_interval)

"""Theory of operation: counting connection events as the router reports them.

The Router tells an ``observer`` callback about each connection that goes
``down`` (with why), each connection ``refused`` during or after its handshake
and each ``dial-failed``.  ``ConnectionEvents`` counts them by direction and
reason label (``reasons.classify``), so the counts are bounded whatever the
peers say.  Pure: the metrics service feeds it; the collector reads it.
"""

from __future__ import annotations

from collections import Counter

from meshrouter.metrics.reasons import classify


class ConnectionEvents:
    """Counters of connection terminations and failures (by direction and reason)."""

    def __init__(self) -> None:
        self.terminations: Counter[str] = Counter()
        self.failures: Counter[tuple[str, str]] = Counter()
        self.established: Counter[str] = Counter()

    def observe(self, kind: str, detail: str) -> None:
        """One observer event: ``kind`` as the Router emits it, ``detail`` its text."""
        if kind == "up":
            # "<peer> in|out"
            direction = "outbound" if detail.endswith(" out") else "inbound"
            self.established[direction] += 1
        elif kind == "down":
            # "<peer> <reason...>"
            reason = detail.split(" ", 1)[1] if " " in detail else detail
            self.terminations[classify(reason)] += 1
        elif kind == "refused":
            # "in|out <address> <reason...>"
            parts = detail.split(" ", 2)
            direction = "outbound" if parts[0] == "out" else "inbound"
            self.failures[(direction, classify(parts[2] if len(parts) > 2 else ""))] += 1
        elif kind == "dial-failed":
            # "<address> <reason...>"
            reason = detail.split(" ", 1)[1] if " " in detail else ""
            self.failures[("outbound", "dial_" + _dial_reason(reason))] += 1


def _dial_reason(reason: str) -> str:
    text = reason.lower()
    if "refused" in text:
        return "refused"
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if "unreachable" in text or "no route" in text:
        return "unreachable"
    return "error"

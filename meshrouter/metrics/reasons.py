"""Theory of operation: free-text connection reasons folded into a bounded label set.

A connection ends, or is refused, with a human sentence ("no message from the
peer for 3s (heartbeat timeout)", "connection limit of 100 reached", ...).  A
Prometheus label must come from a small fixed set, or a peer that invents
reasons could grow the scrape without bound.  ``classify`` maps a sentence to
one of ``REASONS`` by the first rule whose keywords it contains; anything
unrecognised is ``other`` (the sentence itself stays in ``status``).
"""

from __future__ import annotations

# (label, keywords): the first rule with any keyword in the lower-cased text wins.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shutdown", ("shutting down",)),
    ("heartbeat_timeout", ("heartbeat timeout",)),
    ("connection_limit", ("connection limit", "too many", "dropped to make room")),
    ("name_collision", ("share one peer name", "impostor")),
    ("duplicate", ("duplicate", "superseded", "replaced")),
    ("password", ("password", "authentic", "decrypt", "encryption")),
    ("cluster_mismatch", ("cluster",)),
    ("version_mismatch", ("version", "protocol v")),
    ("handshake_timeout", ("handshake not completed", "handshake timed out", "timed out")),
    ("closed_by_peer", ("closed by the peer", "peer closed", "refused by the peer", "goodbye")),
    ("broken", ("connection broken", "reset", "broken", "refused")),
    ("protocol_error", ("malformed", "invalid", "unexpected", "frame", "decode", "too large")),
)
REASONS: tuple[str, ...] = (*(label for label, _ in RULES), "other")


def classify(reason: str) -> str:
    """The label of ``reason`` (always one of ``REASONS``)."""
    text = reason.lower()
    for label, keywords in RULES:
        if any(word in text for word in keywords):
            return label
    return "other"

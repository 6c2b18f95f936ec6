"""The discovery candidate cache: reused only while the known peers and our own
record are the same, and never for longer than its age limit."""

from __future__ import annotations

from meshrouter.dialing.discovery_policy import CandidateCache
from meshrouter.names import PeerName

A, B, C = PeerName(1), PeerName(2), PeerName(3)


def test_candidates_are_computed_again_when_what_decides_them_changes() -> None:
    calls: list[int] = []
    book = {"value": [(A, "10.0.0.1:6783")]}

    def compute() -> list[tuple[PeerName, str]]:
        calls.append(1)
        return list(book["value"])

    cache = CandidateCache(max_age=5.0)
    ours = object()
    peers = frozenset({A, B})
    assert cache.get(peers=peers, ours=ours, now=0.0, compute=compute) == [(A, "10.0.0.1:6783")]
    book["value"] = [(A, "10.0.0.9:6783")]
    # Same peers (even as another, equal set), same record, young: kept.
    assert cache.get(peers=frozenset({B, A}), ours=ours, now=4.9, compute=compute) == [
        (A, "10.0.0.1:6783")]
    assert len(calls) == 1
    # Old enough: computed again, so an address that changed alone is picked up.
    assert cache.get(peers=peers, ours=ours, now=5.0, compute=compute) == [(A, "10.0.0.9:6783")]
    assert len(calls) == 2
    # A new peer, or our own record changed: computed again at once.
    cache.get(peers=frozenset({A, B, C}), ours=ours, now=5.1, compute=compute)
    assert len(calls) == 3
    cache.get(peers=frozenset({A, B, C}), ours=object(), now=5.2, compute=compute)
    assert len(calls) == 4
    cache.get(peers=frozenset({A, B, C}), ours=ours, now=5.3, compute=compute)
    assert len(calls) == 5

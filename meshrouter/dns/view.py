"""Theory of operation: the answerable names, as the resolver sees them.

The resolver never walks the records CRDT: it asks a ``NameView`` -- a snapshot
of the live records of reachable owners, indexed by name and by address -- that
the core rebuilds only when records or reachability changed.  Records of an
owner we cannot reach are left out (not deleted), so clients are not sent to
dead endpoints, and come back the moment the owner is reachable again.

``existing`` holds every name with an address plus its ancestors up to the
domain (empty non-terminals), which is what decides NODATA versus NXDOMAIN.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .names import in_domain


@dataclass(frozen=True, slots=True)
class NameView:
    domain: str
    addresses: dict[str, tuple[int, ...]] = field(default_factory=dict)
    names: dict[int, tuple[str, ...]] = field(default_factory=dict)
    existing: frozenset[str] = frozenset()
    serial: int = 1

    @classmethod
    def build(cls, domain: str, live: Iterable[tuple[str, int]], serial: int) -> NameView:
        """From (name, address) pairs of answerable records (duplicates allowed)."""
        by_name: dict[str, set[int]] = {}
        by_address: dict[int, set[str]] = {}
        for name, address in live:
            if not in_domain(name, domain) or name == domain:
                continue
            by_name.setdefault(name, set()).add(address)
            by_address.setdefault(address, set()).add(name)
        existing: set[str] = {domain}
        for name in by_name:
            current = name
            while current != domain and current not in existing:
                existing.add(current)
                current = current.split(".", 1)[1]
        return cls(
            domain,
            {n: tuple(sorted(a)) for n, a in by_name.items()},
            {a: tuple(sorted(n)) for a, n in by_address.items()},
            frozenset(existing),
            serial,
        )

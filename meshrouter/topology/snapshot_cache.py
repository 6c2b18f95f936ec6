"""Theory of operation: a small LRU of values derived from one record set, by fingerprint.

Routes and dial candidates are pure functions of the record set (plus who
asks, which is applied afterwards on the shared value).  Routers that hold the
same records have the same ``Topology.fingerprint``, so a process-wide cache
keyed by it lets them derive the value once.  In the in-process simulator that
is a thousand routers per record set; in production a single router runs per
process and the cache only ever serves it.  Entries are never mutated once
shared, and single-threaded use is assumed (no locks), like the rest of the
sans-IO core.  The cache is bounded (least recently used out) because record
sets in flight during a topology change are many and short-lived.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

from meshrouter.errors import ConfigError

T = TypeVar("T")


class FingerprintCache(Generic[T]):
    """Bounded LRU from record-set fingerprint to a value derived from that set."""

    __slots__ = ("_entries", "_max_entries")

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[int, T] = OrderedDict()
        self._max_entries = 1
        self.max_entries = max_entries

    @property
    def max_entries(self) -> int:
        return self._max_entries

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        """Resize (e.g. a simulator expecting many record sets in flight); evicts at once."""
        if value < 1:
            raise ConfigError("a fingerprint cache must be able to hold at least one entry")
        self._max_entries = value
        self._evict()

    def get(self, fingerprint: int) -> T | None:
        """The value for ``fingerprint`` (now most recently used), or None."""
        value = self._entries.get(fingerprint)
        if value is not None:
            self._entries.move_to_end(fingerprint)
        return value

    def add(self, fingerprint: int, value: T) -> None:
        """Hold ``value`` as most recently used, evicting the least recently used."""
        self._entries[fingerprint] = value
        self._entries.move_to_end(fingerprint)
        self._evict()

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, fingerprint: object) -> bool:
        return fingerprint in self._entries

    def __iter__(self) -> Iterator[T]:
        """Values held, least recently used first (a snapshot)."""
        return iter(list(self._entries.values()))

    def _evict(self) -> None:
        entries = self._entries
        while len(entries) > self._max_entries:
            entries.popitem(last=False)

"""A tiny GossipData for the gossip tests (kept out of the product package).

``CounterSet`` is a grow-only map ``name -> int`` whose merge keeps the maximum
per name.  Pointwise max is commutative, associative and idempotent, so it is
the simplest honest CRDT to exercise the gossip core with: any delivery order,
duplication or coalescing of updates ends in the same state.  The delta of a
merge is exactly the entries that rose.

``CounterSetChannel`` is the matching Gossiper.  Its digest is the map itself
(for a counter the value is its own version); ``newer_than`` and
``lacks_from`` compare a digest entry by entry.  Real channels send far smaller
digests (peer -> version); the exchange protocol is the same.

Wire form: a msgpack map ``{name: int}``, names sorted so equal sets encode to
equal bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from meshrouter.codec import expect, pack, unpack
from meshrouter.errors import MalformedMessageError
from meshrouter.names import PeerName

MAX_NAME_LENGTH = 256


class CounterSet:
    """Grow-only map name -> int; merge keeps the maximum of each name."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, int] | None = None) -> None:
        self._values: dict[str, int] = dict(values) if values is not None else {}

    @classmethod
    def decode(cls, payload: bytes) -> CounterSet:
        """Inverse of ``encode``; raises MalformedMessageError on anything else."""
        raw = expect(unpack(payload), dict, "counter set")
        values: dict[str, int] = {}
        for name, value in raw.items():
            expect(name, str, "counter name")
            expect(value, int, f"counter {name!r}")
            if len(name) > MAX_NAME_LENGTH:
                raise MalformedMessageError(f"counter name of length {len(name)} is too long")
            values[name] = value
        return cls(values)

    def encode(self) -> bytes:
        return pack(dict(sorted(self._values.items())))

    def merge(self, other: Any) -> CounterSet | None:
        """Raise each of our counters to ``other``'s; return the risen entries."""
        if not isinstance(other, CounterSet):
            raise TypeError(f"cannot merge {type(other).__name__} into a CounterSet")
        delta: dict[str, int] = {}
        for name, value in other._values.items():
            current = self._values.get(name)
            if current is None or value > current:
                self._values[name] = value
                delta[name] = value
        return CounterSet(delta) if delta else None

    def copy(self) -> CounterSet:
        return CounterSet(self._values)

    def set(self, name: str, value: int) -> CounterSet | None:
        """Raise ``name`` to at least ``value``; the delta to originate, or None."""
        return self.merge(CounterSet({name: value}))

    def get(self, name: str) -> int | None:
        return self._values.get(name)

    def as_dict(self) -> dict[str, int]:
        return dict(self._values)

    def newer_than(self, other: CounterSet) -> CounterSet | None:
        """Entries where we are ahead of ``other`` (what ``other`` lacks)."""
        ahead = {
            name: value
            for name, value in self._values.items()
            if (theirs := other._values.get(name)) is None or value > theirs
        }
        return CounterSet(ahead) if ahead else None

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CounterSet) and self._values == other._values

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CounterSet({dict(sorted(self._values.items()))!r})"


class CounterSetChannel:
    """A Gossiper owning one CounterSet; records unicasts it receives (bounded)."""

    def __init__(
        self, initial: Mapping[str, int] | None = None, *, unicast_log_limit: int = 256
    ) -> None:
        self.state = CounterSet(initial)
        self.unicasts: deque[tuple[PeerName, bytes]] = deque(maxlen=unicast_log_limit)

    def set(self, name: str, value: int) -> CounterSet | None:
        """A local change; returns the delta for ``originate_broadcast``."""
        return self.state.set(name, value)

    def decode(self, payload: bytes) -> CounterSet:
        return CounterSet.decode(payload)

    def on_gossip(self, src: PeerName, data: Any) -> CounterSet | None:
        return self.state.merge(data)

    def on_broadcast(self, src: PeerName, data: Any) -> CounterSet | None:
        return self.state.merge(data)

    def on_unicast(self, src: PeerName, payload: bytes) -> None:
        self.unicasts.append((src, payload))

    def full_state(self) -> CounterSet | None:
        return self.state.copy() if len(self.state) else None

    def digest(self) -> bytes:
        return self.state.encode()

    def full_digest(self) -> bytes:
        """No summary digest: the digest is already the full one."""
        return self.digest()

    def wants_full_digest(self, digest: bytes) -> bool:
        return False

    def newer_than(self, digest: bytes) -> CounterSet | None:
        return self.state.newer_than(CounterSet.decode(digest))

    def lacks_from(self, digest: bytes) -> bool:
        return CounterSet.decode(digest).newer_than(self.state) is not None

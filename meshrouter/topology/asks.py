"""Theory of operation: buckets we have asked a neighbour for, while its answer is on its way.

A router that joins a full mesh connects to its contacts at once, and each
contact's bucket summary shows every bucket differing from the joiner's near
empty view: the joiner asked each contact for every bucket and received the
whole topology once per contact (a third of a 100-peer join's bytes).  The
contacts of a converged mesh hold the same records, so the second answer only
repeated the first.

So when a summary shows bucket ``b`` differing, and we have already asked
another neighbour for ``b`` when that neighbour's summary showed the *same*
64-bit fingerprint for ``b`` (at the same bucket count), we do not ask again:
the two hold the same records in that bucket, and the first answer brings us
whatever the second would.  The guarantee rests on that answer arriving, so
an ask stays in flight only until it is settled:

* any gossip from that neighbour on the channel (its answer, or proof that
  its slot is flowing) settles it;
* its connection going down forgets it (and what we skipped because of it is
  asked again at the next exchange: the repair round after every topology
  change, ``repair_delay``);
* our next ask of the same neighbour replaces it.

An ask whose answer was "nothing" (we lacked nothing there) stays until one of
those: the buckets it skips hold nothing we lack either.

Pure data structure; ``Topology`` consults it when answering a summary.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshrouter.names import PeerName


class AsksInFlight:
    """Per neighbour: the bucket count and the (bucket -> fingerprint) we asked for."""

    __slots__ = ("_asked",)

    def __init__(self) -> None:
        self._asked: dict[PeerName, tuple[int, dict[int, int]]] = {}

    def __len__(self) -> int:
        return len(self._asked)

    def pick(self, neighbour: PeerName | None, bits: int, differing: Iterable[int],
             theirs: tuple[int, ...], *, keep: int | None = None) -> list[int]:
        """The buckets of ``differing`` to ask ``neighbour`` for (its summary at
        ``bits`` shows ``theirs``): those no other neighbour was asked for at
        the same fingerprint, and ``keep`` always.  Notes the ask
        (``neighbour`` None: not noted)."""
        covered: set[tuple[int, int]] = set()
        for other, (other_bits, buckets) in self._asked.items():
            if other != neighbour and other_bits == bits:
                covered.update(buckets.items())
        chosen = sorted({b for b in differing if (b, theirs[b]) not in covered}
                        | ({keep} if keep is not None else set()))
        if neighbour is not None:
            self._asked[neighbour] = (bits, {b: theirs[b] for b in chosen})
        return chosen

    def settled(self, neighbour: PeerName) -> bool:
        """``neighbour`` answered (or is gone): its ask no longer covers others.
        True if we had asked it something."""
        return self._asked.pop(neighbour, None) is not None

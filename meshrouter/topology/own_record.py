"""Theory of operation: keeping our own record ours.

Only we write our record, but copies of it travel, and two things can make a
copy compete with it.  An older incarnation of this router (or a bug) can
leave a copy with a higher version, or one with our version and other
content: we never adopt it, we re-issue our record above it
(``reassert_above``), so ours wins everywhere; its log is cleared, because
holders of the competing copy must get our record whole (no delta may start
below the version we re-issue above).  And a lower-named peer using our short
ID makes us pick a free one (the lowest name keeps the ID, as in Weave).

Pure function of our record and what changed; ``Topology`` stores the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from meshrouter.names import SHORT_ID_COUNT, PeerName
from meshrouter.topology.deltas import HEADER, derive_log
from meshrouter.topology.records import PeerRecord, set_record_log

if TYPE_CHECKING:
    import random


def reissued(ours: PeerRecord, changed: Mapping[PeerName, PeerRecord],
             reassert_above: int | None, used_short_ids: Callable[[], Iterable[int | None]],
             rng: random.Random) -> PeerRecord | None:
    """Our record re-issued above a competing copy (``reassert_above``) and/or
    with a new short ID if a lower-named peer among ``changed`` holds ours;
    None when neither is needed.  ``used_short_ids()`` lists the short IDs of
    every other record we hold (asked only when we must move)."""
    new_short_id = ours.short_id
    if ours.short_id is not None and any(
        record.short_id == ours.short_id and name < ours.name
        for name, record in changed.items()
    ):
        new_short_id = free_short_id(used_short_ids(), rng)
    if reassert_above is None and new_short_id == ours.short_id:
        return None
    floor = max(ours.version, reassert_above or 0)
    updated = replace(ours, version=floor + 1, short_id=new_short_id)
    if reassert_above is None:
        derive_log(updated, ours, (HEADER,))
    else:
        set_record_log(updated, ())
    return updated


def free_short_id(used: Iterable[int | None], rng: random.Random) -> int | None:
    """A random short ID not in ``used``; None if all are taken."""
    taken = set(used)
    free = [i for i in range(SHORT_ID_COUNT) if i not in taken]
    return rng.choice(free) if free else None

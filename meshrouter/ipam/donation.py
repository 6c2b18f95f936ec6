"""Theory of operation: donations, asking for space and giving it.

A router with no free space in the range a request wants asks one reachable
owner for some (a ``SpaceMessage`` unicast), chosen at random weighted by the
free count the owner publishes in its note.  It asks again when the donation
lands (it may want more), when the peer denies, or after ``DONATION_RETRY``.

A donor gives from the top of one of its entries: every address above the
highest one it handed out (and above its floor) is *donatable*, reserved for
its pool or not -- the split simply shortens its reservation (``Ring.donate``).
It gives half of the entry's donatable addresses, rounded up, so a donor with
one free address gives that one.  The recipient may use the space once the
donor's heir has acknowledged the split (``ring.py``).  A peer that cannot give
(not in the majority, still learning the ring, waiting for space itself, or
its free addresses lie below ones in use) answers with a denial that says why;
the requester remembers it ``DENIAL_MEMORY`` seconds (or until the peer's note
changes) and shows it as the reason its request waits.
"""

from __future__ import annotations

import random
from collections.abc import Collection
from collections.abc import Set as AbstractSet

from meshrouter.ipam.allocations import Allocations
from meshrouter.ipam.messages import SPACE_DENIED, SPACE_REQUEST, SpaceMessage
from meshrouter.ipam.outbox import Counters, Outbox
from meshrouter.ipam.ring import Ring
from meshrouter.names import PeerName, format_peer_name

DONATION_RETRY = 2.0
RANGE_FULL = "the range is full: no peer has a free address left"
DENIAL_MEMORY = 10.0


def refusal(ring: Ring | None, synced: bool, in_majority: bool, waiting: bool) -> str:
    """Why a peer may not donate at all right now ("" when it may)."""
    if ring is None:
        return "it has no address ring yet"
    if not synced:
        return "it is still learning the address ring"
    if not in_majority:
        # The recipient could use the space only through acknowledgements,
        # which nobody without a majority may give: say so at once.
        return "it cannot reach the owners of most of the range"
    if waiting:
        return "it is waiting for addresses itself"
    return ""


class Donations:
    """Both sides of donation for one router; see the module docstring."""

    def __init__(self, me: PeerName, allocations: Allocations, counters: Counters,
                 out: Outbox) -> None:
        self.me = me
        self.allocations = allocations
        self.counters = counters
        self.out = out
        # donor -> (when we asked, the tokens we owned then)
        self._asked: dict[PeerName, tuple[float, frozenset[int]]] = {}
        # peer -> (when it denied, why, the version of its note then)
        self._denied: dict[PeerName, tuple[float, str, int]] = {}

    # ------------------------------------------------------------------ donor

    def on_request(self, ring: Ring | None, src: PeerName, message: SpaceMessage,
                   refusal: str, reachable: Collection[PeerName]) -> None:
        """Answer a request: a donation (a ring edit, broadcast) or a denial.

        ``refusal`` is why we may not give at all right now ("" when we may);
        ``reachable`` is whom we reach (an entry whose heir is not among them
        is not split: see ``splittable``).
        """
        if not refusal:
            if ring is None:
                refusal = "it has no address ring yet"
            elif src == self.me:
                refusal = "it was asked by itself"
            elif not self.donate(ring, src, message.start, message.end, reachable):
                refusal = self.why_not(ring, message.start, message.end, reachable)
        if refusal:
            self.out.unicasts.append(
                (src, SpaceMessage(SPACE_DENIED, message.start, message.end, refusal).encode()))

    def splittable(self, ring: Ring, token: int, reachable: Collection[PeerName]) -> str:
        """Why our entry at ``token`` may not be split now ("" when it may).

        The recipient may use a split only once our heir has acknowledged it
        (``Ring.origin_settled``), and our heir acknowledges our entry only once
        the split that made the entry is settled in turn: a split of an entry
        that is not settled, or whose heir we cannot reach, gives space nobody
        can use until a partition heals -- while a peer whose entries settle
        could have given it (campaign seed 141).
        """
        if ring.split_lost(token):
            return "its space was given to it by a peer reclaimed since"
        if not ring.origin_settled(token):
            return "the space it got by donation is not acknowledged yet"
        heir = ring.heir(token)
        if heir is not None and heir not in reachable:
            return f"it cannot reach peer {format_peer_name(heir)}, which acknowledges its space"
        return ""

    def pieces(self, ring: Ring, start: int, end: int,
               reachable: Collection[PeerName] | None) -> list[tuple[int, int, int]]:
        """(donatable count, entry token, lowest donatable address) per entry of ours
        that has donatable addresses in [start, end) and may be split now (with
        ``reachable`` None: whether or not it may be split now)."""
        floor = self.allocations.floor
        usable = self.allocations.range.usable
        top: dict[int, int] = {}
        for address in self.allocations.user_of:
            token = ring.entry_at(address).token
            top[token] = max(top.get(token, address), address)
        found = []
        for entry, entry_end in ring.owned_by(self.me):
            if entry.frozen or ring.split_lost(entry.token) or (
                    reachable is not None and self.splittable(ring, entry.token, reachable)):
                continue
            token = entry.token
            high = min(entry_end, end)
            if (token not in top and floor.get(token, token) <= token and start <= token
                    and entry_end <= end):
                low = token  # nothing used: the whole entry may go
            else:
                low = max(top.get(token, token) + 1, start, token + 1, floor.get(token, 0))
            count = sum(1 for a in range(low, high) if usable(a)) if low < high else 0
            if count > 0:
                found.append((count, token, low))
        return found

    def donate(self, ring: Ring, recipient: PeerName, start: int, end: int,
               reachable: Collection[PeerName]) -> bool:
        """Give ``recipient`` half (rounded up) of the donatable addresses of the entry
        that has the most in [start, end); False when there are none."""
        for count, token, low in sorted(self.pieces(ring, start, end, reachable),
                                        reverse=True):
            if self._give(ring, recipient, count, token, low, end):
                self.counters.donations_given += 1
                self.out.changed()
                return True
        return False

    def _give(self, ring: Ring, recipient: PeerName, count: int, token: int, low: int,
              end: int) -> bool:
        give = (count + 1) // 2
        if low == token and give >= count and self._may_transfer(ring, token, recipient):
            ring.transfer(token, recipient, self.me)
            return True
        usable = self.allocations.range.usable
        high = min(ring.range_end(token), end)
        lowest = max(low, token + 1)  # a split keeps at least the token
        above = sum(1 for a in range(lowest, high) if usable(a))
        if above == 0:
            return False  # only the token, and it may not go whole
        give = min(give, above)
        split_at = high
        while give > 0 and split_at > lowest:
            split_at -= 1
            if usable(split_at):
                give -= 1
        ring.donate(token, split_at, recipient, self.me)
        return True

    def _may_transfer(self, ring: Ring, token: int, recipient: PeerName) -> bool:
        """May an unused entry (often a single address) go whole, as reset gives?

        Only when no peer with a ring that misses the transfer could reclaim
        it: the entry's heir as ours (``old``) is either the recipient itself,
        or the heir it will have as the recipient's -- who acknowledges the
        recipient's reservations only once it knows the transfer.  (A split
        needs no such care: its origin waits for our own heir's ack.)
        """
        old = ring.heir(token)
        return old == recipient or old == ring.heir(token, recipient)

    def why_not(self, ring: Ring, start: int, end: int, reachable: Collection[PeerName]) -> str:
        held = [why for e, _end in ring.owned_by(self.me)
                if not e.frozen and (why := self.splittable(ring, e.token, reachable))]
        if held and self.pieces(ring, start, end, None):
            return held[0]
        free = sum(1 for _ in self.allocations.free_addresses(ring, start, end))
        if self.allocations.free_count(ring) > 0 or free:
            return "its free addresses lie below addresses in use"
        return "it has no free addresses in the range"

    # ------------------------------------------------------------------ recipient

    def on_denied(self, src: PeerName, now: float, reason: str = "",
                  ring: Ring | None = None) -> None:
        note = ring.notes.get(src) if ring is not None else None
        self._denied[src] = (now, reason or "it has no space to give",
                             note.version if note is not None else -1)
        self._asked.pop(src, None)

    def landed(self, ring: Ring) -> None:
        """A ring merge may bring a donation (a split or a whole entry): once we own
        a token we did not own when we asked, ask again at once if still short --
        a burst may need more than one donation."""
        if not self._asked:
            return
        owned = {e.token for e, _ in ring.owned_by(self.me)}
        for donor, (_when, tokens) in list(self._asked.items()):
            if owned - tokens:
                del self._asked[donor]

    def ask(self, ring: Ring, start: int, end: int, now: float, reachable: AbstractSet[PeerName],
            rng: random.Random | None) -> str:
        """Ask a peer for space in [start, end) unless one was asked lately; the reason."""
        for donor, (asked_at, _tokens) in list(self._asked.items()):
            if now - asked_at < DONATION_RETRY:
                return (f"asked peer {format_peer_name(donor)} for space "
                        f"{now - asked_at:.1f}s ago")
            del self._asked[donor]
        candidates: list[tuple[PeerName, int]] = []
        denied: list[str] = []
        for owner in sorted(ring.owners()):
            if owner == self.me or owner not in reachable:
                continue
            note = ring.notes.get(owner)
            has_space = note is not None and note.free > 0 and any(
                not e.frozen and e.token < end and entry_end > start
                for e, entry_end in ring.owned_by(owner)
            )
            if not has_space:
                continue
            assert note is not None
            when, why, version = self._denied.get(owner, (-1e18, "", -1))
            # A denial stands for DENIAL_MEMORY, unless the peer's note has
            # changed since (it allocated, released, got or gave space).
            if now - when < DENIAL_MEMORY and note.version <= version:
                denied.append(f"peer {format_peer_name(owner)} has {note.free} free but "
                              f"cannot give any: {why} ({now - when:.0f}s ago)")
                continue
            candidates.append((owner, note.free))
        if not candidates:
            if denied:
                return "; ".join(denied[:3])
            # An owner out of reach may have freed addresses since its note we
            # hold (or the note is old news from before a partition): the range
            # is "full" only when every owner of live space was heard from
            # (campaign seed 139: refused as full 2 s after a heal, before the
            # mesh re-formed, while a peer across it had space).
            live = {e.owner for e in ring.entries.values() if not e.frozen}
            away = sorted(o for o in live if o != self.me and o not in reachable)
            if away:
                shown = [f"peer {format_peer_name(o)} ({_free(ring, o)})" for o in away]
                return ("no reachable peer has free space in the range; unreachable: "
                        + ", ".join(shown[:3]) + (f" and {len(shown) - 3} more"
                                                  if len(shown) > 3 else ""))
            unknown = [o for o in ring.owners() if o != self.me and o not in ring.notes]
            if unknown:
                return (f"waiting to hear the free space of peer {format_peer_name(unknown[0])}"
                        + (f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""))
            if (start, end) == (ring.start, ring.end):
                return RANGE_FULL
            return "no reachable peer has free space in the range"
        if rng is None:
            return "looking for a peer with free space"
        total = sum(w for _, w in candidates)
        pick = rng.random() * total
        donor = candidates[-1][0]
        for owner, weight in candidates:
            pick -= weight
            if pick < 0:
                donor = owner
                break
        self._asked[donor] = (now, frozenset(e.token for e, _ in ring.owned_by(self.me)))
        self.counters.donations_asked += 1
        self.out.unicasts.append((donor, SpaceMessage(SPACE_REQUEST, start, end).encode()))
        return f"asked peer {format_peer_name(donor)} for space"


def _free(ring: Ring, owner: PeerName) -> str:
    note = ring.notes.get(owner)
    return f"{note.free} free when last heard" if note is not None else "free space unknown"

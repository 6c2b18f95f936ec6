"""Theory of operation: the heir's two duties -- acknowledging and reclaiming.

We are the *heir* of every entry whose nearest preceding live entry of
another owner is ours (``Ring.heir``).  Each tick, as heir, we

- acknowledge the entry's current reservation in our own ``Note`` (only while
  in the majority, only once the split that created the entry is known to the
  donor's heir, and never for an entry holding addresses we handed out: it was
  made by a peer acting on a stale ring);
- reclaim the entry once its owner has been unreachable for the reclaim delay
  and we have been in the majority for as long -- and only if its heir has been
  us or a peer we reach all that time: the space above the highest
  acknowledged reservation becomes ours, the entry is frozen below it.

The rules that make this safe are stated in ``ring.py``.

**The partition window.**  A partition is noticed only after the heartbeat
timeout; until then peers on the far side still count as reachable, so a peer
cut off with a minority can acknowledge, donate and hand out addresses as if
it had a majority, and nobody on the majority side ever hears of it.  The
majority, in turn, can reclaim only through heirs.  While an owner is out of
our reach, the acknowledgements it may use come from the heirs it had; if its
heir in our view has been us or a peer we reach all that time, we know them
(a heir we reach hands its knowledge over with its own split: the ring that
carries the split carries its note).  If at any moment the heir was itself out
of our reach -- typically cut off together with the owner, and later
reclaimed by us, which makes us the new heir -- it may have acknowledged a
larger reservation in the window, and we would reclaim above a floor that is
too low (campaign seed 106).  Such an entry is never reclaimed
(``Majority.heir_kept_in_reach``); its space stays its owner's until the owner
is back (its heir then acknowledges as usual) or an operator runs ``rmpeer``.
Window donations need no rule of their own: the recipient uses the space only
through acknowledged reservations, and a donor's split is settled by the
donor's heir (``origin_settled``), so whoever could reclaim the donor's entry
either saw the split or lost sight of the heir.  Reclaiming needs the majority
held, without a gap, for the whole reclaim delay, and ``majority.py`` counts
addresses, which no side can gain on its own; so of two sides at most one
ever reclaims.

The reclaim itself is decided by a vote (``reclaim_vote.py``): the heir
proposes it, and writes it only once owners of a strict majority of the live
addresses -- among them every peer that was the entry's heir while its owner
was out of reach -- accepted it over fresh round trips.  That closes the two
windows a reclaim decided from the reachability view alone left open: a
majority counted across a partition not noticed yet (campaign seed 135), and
a heir cut off *after* the owner that acknowledged in the seconds before we
noticed (it must accept, checks the floor against its own acknowledgements,
and promises to acknowledge nothing above it).
"""

from __future__ import annotations

from meshrouter.ipam.allocations import Allocations
from meshrouter.ipam.majority import Majority
from meshrouter.ipam.messages import ReclaimTarget
from meshrouter.ipam.outbox import Counters, Outbox
from meshrouter.ipam.reclaim_vote import ReclaimVotes
from meshrouter.ipam.ring import Ring
from meshrouter.ipam.ring_records import Ack
from meshrouter.names import PeerName, format_peer_name

RECLAIM_LOG = 32


def give_acks(ring: Ring, me: PeerName, majority: Majority, allocations: Allocations,
              votes: ReclaimVotes, counters: Counters, out: Outbox) -> None:
    """Acknowledge the reservations of the entries we are heir of (never above
    a floor we promised a reclaim proposer)."""
    in_majority = majority.holds(ring)
    note = ring.notes.get(me)
    old = note.acks if note is not None else {}
    acks: dict[int, Ack] = {}
    for entry, end in ring.ordered():
        if entry.owner == me or entry.frozen or ring.heir(entry.token) != me:
            continue
        if allocations.holds_addresses_in(entry.token, end):
            # Addresses we handed out lie in another owner's entry: it was
            # made by a peer acting on a stale ring; never let it be used.
            continue
        want = Ack(entry.owner, entry.version, entry.reserved)
        given = old.get(entry.token)
        promised = votes.promised_floor(entry.token)
        if given == want:
            acks[entry.token] = given
        elif (in_majority and ring.origin_settled(entry.token)
              and (promised is None or want.reserved <= promised)):
            acks[entry.token] = want
            counters.acks_given += 1
        elif given is not None and given.owner == entry.owner:
            acks[entry.token] = given
    if ring.set_note(me, acks=acks):
        out.changed()


def reclaim(ring: Ring, me: PeerName, now: float, majority: Majority,
            votes: ReclaimVotes) -> None:
    """Propose the reclaim of entries whose owner is gone for the reclaim delay
    (``commit`` writes one once the vote carries it)."""
    majority.track_heirs(ring)
    if not majority.holds(ring):
        return
    for entry, end in list(ring.ordered()):
        if entry.owner == me or entry.frozen:
            continue
        gone = majority.unreachable_for(entry.owner, now)
        if gone is None or gone < majority.reclaim_after:
            continue
        if not majority.held_for_reclaim(now):
            continue
        if not majority.heir_kept_in_reach(entry.token, entry.owner):
            continue
        if ring.heir(entry.token) != me or votes.blocked(entry.token, entry.owner, now):
            continue
        floor = ring.reclaim_floor(entry.token)
        if floor >= end:
            continue  # all of it reserved: nothing to take
        target = ReclaimTarget(entry.token, entry.owner, entry.version, floor)
        votes.propose(ring, target, majority.heirs_seen.get((entry.token, entry.owner), set()),
                      majority.reachable, now)


def commit(ring: Ring, me: PeerName, target: ReclaimTarget, now: float,
           counters: Counters, out: Outbox) -> bool:
    """Write a reclaim the vote carried, if the ring still shows what was proposed."""
    entry = ring.entries.get(target.token)
    if (entry is None or entry.frozen or entry.owner != target.owner
            or entry.version != target.version or ring.heir(target.token) != me
            or ring.reclaim_floor(target.token) != target.floor):
        return False
    if not ring.reclaim(target.token, me):
        return False
    counters.reclaims += 1
    counters.last_reclaim_at = now
    counters.reclaim_log.append((now, format_peer_name(target.owner)))
    del counters.reclaim_log[:-RECLAIM_LOG]
    out.changed()
    return True

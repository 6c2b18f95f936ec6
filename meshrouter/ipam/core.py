"""Theory of operation: one router's IP address management, sans-IO.

``IpamCore`` owns this router's view of the ring (``ring.py``), the founding
vote while there is no ring yet (``paxos.py``), and the local allocations
(container ID -> addresses).  The shell feeds it gossip, unicasts, user
requests and a periodic ``tick(now, reachable, rng)``; the core answers with
state to broadcast (``take_broadcast``), unicasts to send (``take_unicasts``)
and a ``dirty`` flag that says the persisted blob (``dump``) is stale.

A request that cannot be met at once -- no ring yet, a reservation waiting
for its heir's acknowledgement, no free space here -- stays *pending* with the
reason the user sees in ``status ipam``; the shell re-tries pending requests
after every change (``attempt``).  Nothing here blocks or sleeps.

Each tick does, in order: track which ring owners are unreachable (and since
when); advance founding; acknowledge the reservations we are heir of;
reclaim the entries of owners unreachable for ``reclaim_after`` (the rules
that make this safe are in ``ring.py``); keep a pool of acknowledged
addresses ahead of demand; ask a peer for space when we have none; publish
our free-address count.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from meshrouter.codec import expect, pack, unpack
from meshrouter.errors import (
    IpamConflictError,
    IpamError,
    IpamInvalidError,
    MeshError,
    StateFileError,
)
from meshrouter.ipam.address_range import AddressRange, format_address
from meshrouter.ipam.founding import CONSENSUS, SEED, FoundingMode
from meshrouter.ipam.messages import SPACE_DENIED, SPACE_REQUEST, SpaceMessage
from meshrouter.ipam.paxos import Claims, Paxos
from meshrouter.ipam.ring import Ack, Entry, Ring
from meshrouter.ipam.state import IpamState
from meshrouter.names import PeerName, format_peer_name

POOL = 16
DONATION_RETRY = 2.0
DENIAL_MEMORY = 10.0
PROPOSE_RETRY = 5.0
STARTUP_GRACE = 5.0
STATE_FORMAT = 1
MAX_CONTAINER_ID = 256
MAX_ADDRESSES_PER_CONTAINER = 64
UNSYNCED = "learning the current address ring from peers (this router started without state)"


@dataclass(slots=True)
class Pending:
    """A request that waits, and why (shown by ``status ipam``)."""

    container: str
    kind: str  # "allocate" or "claim"
    subnet: tuple[int, int]
    address: int | None
    since: float
    reason: str = ""


@dataclass(slots=True)
class Counters:
    allocations: int = 0
    releases: int = 0
    reclaims: int = 0
    donations_given: int = 0
    donations_asked: int = 0
    acks_given: int = 0
    conflicts: int = 0
    last_reclaim_at: float | None = None
    reclaim_log: list[tuple[float, str]] = field(default_factory=list)


class IpamCore:
    """Allocation state of one router; see the module docstring."""

    def __init__(
        self,
        me: PeerName,
        uid: int,
        address_range: AddressRange,
        mode: FoundingMode,
        *,
        reclaim_after: float,
        pool: int = POOL,
    ) -> None:
        self.me = me
        self.uid = uid
        self.range = address_range
        self.mode = mode
        self.reclaim_after = reclaim_after
        self.pool = max(1, pool)
        self.ring: Ring | None = None
        self.paxos: Paxos | None = None
        self.allocations: dict[str, list[int]] = {}
        self.user_of: dict[int, str] = {}
        self.floor: dict[int, int] = {}  # token -> first address we may hand out
        self.pending: dict[tuple[str, str, int, int], Pending] = {}
        self.unreachable_since: dict[PeerName, float] = {}
        self.counters = Counters()
        self.dirty = False
        self._broadcast = False
        self._unicasts: list[tuple[PeerName, bytes]] = []
        self._asked: dict[PeerName, float] = {}
        self._denied: dict[PeerName, float] = {}
        self._proposed_at: float | None = None
        # False after a start without a state file, until we have compared
        # notes with a neighbour (or STARTUP_GRACE passed with none): a router
        # that lost its data must not act on a ring it founded or learned
        # before hearing the cluster's current one.
        self.synced = False
        self.left = False  # after reset: ignore gossip until the router stops
        self._hint: dict[int, int] = {}
        self.conflicting: set[int] = set()  # our addresses in another's entry (never expected)
        self._started_at: float | None = None
        self._reachable: set[PeerName] = set()
        self.primed = False  # set by `prime`: found now, without waiting for a request
        self._majority_since: float | None = None
        self._last_tick: float | None = None
        self._written: dict[int, int] = {}  # token -> highest reservation this incarnation wrote

    # ------------------------------------------------------------------ identity

    @property
    def cluster_id(self) -> str:
        return self.ring.cluster_id if self.ring is not None else ""

    def start(self, now: float) -> None:
        """Found at once (seed mode) or join the vote (consensus mode)."""
        self._started_at = now
        if self.ring is not None:
            return
        if self.mode.kind == SEED and self.me in self.mode.seeds:
            self._adopt(Ring.found(self.range.start, self.range.end, self.mode.seeds))
        elif self.mode.kind == CONSENSUS:
            self.paxos = Paxos((self.me, self.uid), self.mode.quorum)
            knowledge = self.paxos.knowledge
            knowledge.claims.setdefault((self.me, self.uid), Claims(None, None, None))
            self._broadcast = True

    # ------------------------------------------------------------------ gossip

    def state(self) -> IpamState:
        return IpamState(self.ring, self.paxos.knowledge if self.paxos is not None else None)

    def digest(self) -> bytes:
        if self.ring is not None:
            return b"r" + self.ring.fingerprint()
        if self.paxos is not None:
            return b"p" + _hash(self.paxos.knowledge.encode())
        return b""

    def receive(self, state: IpamState, now: float) -> IpamState | None:
        """Merge gossip; return what to relay (the whole state) or None.

        Raises ``ClusterMismatchError`` for a ring of another cluster or range.
        """
        if self.left:
            return None
        changed = False
        if state.ring is not None:
            self.synced = True
            if self.ring is None:
                if (state.ring.start, state.ring.end) != (self.range.start, self.range.end):
                    ours = Ring.found(self.range.start, self.range.end, [self.me])
                    ours.same_cluster(state.ring)
                self._adopt(state.ring.copy())
                changed = True
            else:
                changed = self.ring.merge(state.ring)
                if changed:
                    self._raise_floors()
                    self._check_own_entries()
        elif state.paxos is not None and self.ring is None:
            if self.paxos is None:
                # Observers and seed non-members keep the vote's knowledge only
                # to pass it on; they never claim anything.
                self.paxos = Paxos((self.me, self.uid), max(1, self.mode.quorum))
                if self.mode.kind != CONSENSUS:
                    self.paxos.knowledge.claims.pop((self.me, self.uid), None)
            changed = self.paxos.merge(state.paxos)
            if changed and self.mode.kind == CONSENSUS:
                self._advance_founding(now, None)
        if changed:
            self.dirty = True
            return self.state().copy()
        return None

    def neighbour_digest(self, digest: bytes) -> None:
        """A neighbour showed its digest: without a ring, or with the very ring we
        hold, it has nothing to teach us (any other ring arrives in ``receive``)."""
        if not digest.startswith(b"r") or digest == self.digest():
            self.synced = True

    def take_broadcast(self) -> IpamState | None:
        """The state to broadcast if our own edits changed it since the last call."""
        if not self._broadcast:
            return None
        self._broadcast = False
        return self.state().copy()

    def take_unicasts(self) -> list[tuple[PeerName, bytes]]:
        out, self._unicasts = self._unicasts, []
        return out

    def _adopt(self, ring: Ring) -> None:
        """Take a ring as ours (founded here or learned from a peer)."""
        self.ring = ring
        self.paxos = None
        self.dirty = True
        self._broadcast = True
        self._raise_floors()

    def _raise_floors(self) -> None:
        # A reservation of our own entry that this incarnation did not write
        # (nor loaded from its state file) was made by an earlier incarnation,
        # which may have handed out anything in it.
        assert self.ring is not None
        for entry, _end in self.ring.owned_by(self.me):
            floor = self.ring.reclaim_floor(entry.token)
            known = max(self._written.get(entry.token, entry.token),
                        self.floor.get(entry.token, entry.token))
            if floor > known:
                self.floor[entry.token] = floor

    def _note_written(self, token: int) -> None:
        assert self.ring is not None
        written = self.ring.entries[token].reserved
        self._written[token] = max(self._written.get(token, token), written)

    def _check_own_entries(self) -> None:
        """Count allocations that a merge put under another owner (never expected)."""
        assert self.ring is not None
        for address in self.user_of:
            if self.ring.entry_at(address).owner != self.me:
                self.conflicting.add(address)
        self.counters.conflicts = len(self.conflicting)

    # ------------------------------------------------------------------ unicasts

    def on_unicast(self, src: PeerName, payload: bytes, now: float) -> None:
        message = SpaceMessage.decode(payload)
        if message.kind == SPACE_DENIED:
            self._denied[src] = now
            self._asked.pop(src, None)
            return
        if message.kind == SPACE_REQUEST:
            if not self._donate(src, message.start, message.end):
                self._unicasts.append(
                    (src, SpaceMessage(SPACE_DENIED, message.start, message.end).encode())
                )

    def _donate(self, recipient: PeerName, start: int, end: int) -> bool:
        """Give ``recipient`` up to half of our unreserved space inside [start, end)."""
        if (self.ring is None or recipient == self.me or not self.synced
                or not self._in_majority()):
            # A cut-off minority must not add voters (each recipient becomes
            # an owner), or both sides of a split could count a majority.
            return False
        free = self.free_count()
        best: tuple[int, Entry, int] | None = None
        for entry, entry_end in self.ring.owned_by(self.me):
            if entry.frozen:
                continue
            low = max(entry.reserved, start, entry.token + 1, self.floor.get(entry.token, 0))
            room = min(entry_end, end) - low
            if room > 0 and (best is None or room > best[0]):
                best = (room, entry, entry_end)
        if best is None or free < 2:
            return False
        room, entry, entry_end = best
        give = max(1, min(room, free) // 2)
        low = max(entry.reserved, start, entry.token + 1, self.floor.get(entry.token, 0))
        split_at = max(low, min(entry_end, end) - give)
        self.ring.donate(entry.token, split_at, recipient, self.me)
        self.counters.donations_given += 1
        self.dirty = True
        self._broadcast = True
        return True

    # ------------------------------------------------------------------ user verbs

    def allocate(self, container: str, subnet: tuple[int, int] | None, now: float) -> int | None:
        """An address for ``container`` (the one it has in the subnet, if any).

        Returns None when the request must wait; its reason is in ``pending``.
        """
        _check_container(container)
        if self.left:
            raise IpamConflictError("this router has left its cluster (reset) and is stopping")
        start, end = subnet if subnet is not None else (self.range.start, self.range.end)
        for address in self.allocations.get(container, []):
            if start <= address < end:
                return address
        key = (container, "allocate", start, end)
        if self.ring is not None and not self.synced:
            self._wait(key, container, "allocate", (start, end), None, now, UNSYNCED)
            return None
        if self.ring is None:
            self._wait(key, container, "allocate", (start, end), None, now, self._no_ring_reason())
            return None
        found = self._find_free(start, end)
        if found is not None:
            self._record(container, found)
            self._refill(start, end)
            return found
        reason = self._make_room(start, end, now)
        self._wait(key, container, "allocate", (start, end), None, now, reason)
        return None

    def claim(self, container: str, address: int, now: float) -> bool:
        """Give ``container`` this very address; False when it must wait."""
        _check_container(container)
        if not self.range.usable(address):
            raise IpamInvalidError(f"{format_address(address)} is not usable in {self.range}")
        user = self.user_of.get(address)
        if user == container:
            return True
        if user is not None:
            raise IpamConflictError(f"{format_address(address)} is already allocated to {user}")
        key = (container, "claim", address, address + 1)
        if self.ring is not None and not self.synced:
            self._wait(key, container, "claim", (address, address + 1), address, now, UNSYNCED)
            return False
        if self.ring is None:
            self._wait(key, container, "claim", (address, address + 1), address, now,
                       self._no_ring_reason())
            return False
        entry = self.ring.entry_at(address)
        if entry.owner != self.me:
            raise IpamConflictError(
                f"{format_address(address)} belongs to peer {format_peer_name(entry.owner)}; "
                "claim it there (or release it there first)")
        if address < self.floor.get(entry.token, entry.token):
            raise IpamConflictError(
                f"{format_address(address)} may still be in use from before this router "
                "restarted without its data; it cannot be claimed")
        if address < self._usable_end(entry):
            self._record(container, address)
            return True
        if entry.frozen:
            raise IpamConflictError(
                f"{format_address(address)} was reclaimed by another peer while this router "
                "was unreachable")
        self.ring.extend(entry.token, address + 1, self.me)
        self._note_written(entry.token)
        self._broadcast = True
        self.dirty = True
        self._wait(key, container, "claim", (address, address + 1), address, now,
                   self._ack_reason(entry.token, now))
        return False

    def release(self, container: str, address: int | None = None) -> list[int]:
        """Free the container's addresses (or one of them); return what was freed."""
        addresses = self.allocations.get(container, [])
        freed = [a for a in addresses if address is None or a == address]
        for a in freed:
            addresses.remove(a)
            del self.user_of[a]
            if self.ring is not None:
                token = self.ring.entry_at(a).token
                self._hint[token] = min(self._hint.get(token, a), a)
        if not addresses:
            self.allocations.pop(container, None)
        for key in [k for k in self.pending if k[0] == container]:
            del self.pending[key]
        if freed:
            self.counters.releases += len(freed)
            self.dirty = True
        return freed

    def lookup(self, container: str) -> list[int]:
        return list(self.allocations.get(container, []))

    def cancel(self, container: str) -> None:
        """Forget pending requests of a container whose caller gave up."""
        for key in [k for k in self.pending if k[0] == container]:
            del self.pending[key]

    def attempt(self, now: float) -> list[tuple[str, int]]:
        """Retry every pending request; return the (container, address) now met."""
        done: list[tuple[str, int]] = []
        for key, request in list(self.pending.items()):
            if request.kind == "allocate":
                address = self.allocate(request.container, request.subnet, now)
                if address is not None:
                    done.append((request.container, address))
            else:
                assert request.address is not None
                try:
                    if self.claim(request.container, request.address, now):
                        self.pending.pop(key, None)
                        done.append((request.container, request.address))
                except IpamError as exc:
                    request.reason = str(exc)
        return done

    # ------------------------------------------------------------------ leaving

    def rmpeer(self, name: PeerName, reachable: set[PeerName]) -> int:
        """Take over every range of ``name``, which the operator says is gone."""
        if self.ring is None:
            raise IpamConflictError("no address ring yet: nothing to take over")
        if name == self.me:
            raise IpamInvalidError("rmpeer names another peer; to leave, use `meshrouter reset`")
        if name in reachable:
            raise IpamConflictError(
                f"peer {format_peer_name(name)} is reachable; stop it (or run "
                "`meshrouter reset` on it) before removing it")
        taken = self.ring.take_over(name, self.me)
        if taken:
            self.dirty = True
            self._broadcast = True
        return taken

    def reset(self, reachable: set[PeerName]) -> PeerName | None:
        """Hand every range we own to a live peer and forget our allocations.

        Returns the heir, or None when we own nothing.  Raises when there is
        space to hand over but no reachable peer to take it.
        """
        if self.ring is None:
            return None
        ours = [e for e, _ in self.ring.owned_by(self.me) if not e.frozen]
        if not ours:
            return None
        live = sorted(p for p in reachable if p != self.me)
        if not live:
            raise IpamConflictError(
                "no reachable peer to hand our address ranges to; connect to the cluster "
                "first (or stop the router: its space is reclaimed automatically)")
        owners = self.ring.owners()
        heirs = [self.ring.heir(e.token) for e in ours]
        heir = next((h for h in heirs if h in live), None)
        if heir is None:
            heir = next((p for p in live if p in owners), live[0])
        for entry in ours:
            self.ring.transfer(entry.token, heir, self.me)
        self.allocations.clear()
        self.user_of.clear()
        self.pending.clear()
        self.dirty = True
        self._broadcast = True
        return heir

    def forget(self) -> None:
        """After ``reset``: drop the ring and everything else, so that this
        router, restarted, joins whichever cluster it is connected to."""
        self.ring = None
        self.paxos = None
        self.allocations.clear()
        self.user_of.clear()
        self.pending.clear()
        self.floor.clear()
        self._written.clear()
        self.synced = True
        self.dirty = True
        self.left = True

    # ------------------------------------------------------------------ tick

    def tick(self, now: float, reachable: set[PeerName], rng: random.Random) -> None:
        """Periodic and after-change work; see the module docstring."""
        if self.left:
            return
        if self._started_at is None:
            self._started_at = now
        self._track_reachability(now, reachable)
        self._track_majority(now)
        if not self.synced and now - self._started_at >= STARTUP_GRACE:
            self.synced = True  # nobody to learn from: we are alone
        if self.ring is None:
            self._advance_founding(now, rng)
            self._refresh_reasons(now)
            return
        if not self.synced:
            self._refresh_reasons(now)
            return
        self._give_acks()
        self._reclaim(now)
        if any(not e.frozen for e, _ in self.ring.owned_by(self.me)):
            self._refill(self.range.start, self.range.end)
        self._publish_free()
        for request in self.pending.values():
            if request.kind == "allocate":
                request.reason = self._make_room(request.subnet[0], request.subnet[1], now, rng)
        self._refresh_reasons(now)

    def _track_majority(self, now: float) -> None:
        """Since when we have been in the majority without a gap.

        A peer back from a partition (or a pause) first has to catch up with
        what the majority did meanwhile -- heirs may have changed -- so its
        reclaim clock starts again; so does a long gap between ticks.
        """
        gap = self._last_tick is not None and now - self._last_tick > self.reclaim_after / 2
        self._last_tick = now
        if self.ring is None or not self._in_majority():
            self._majority_since = None
        elif gap or self._majority_since is None:
            self._majority_since = now

    def _track_reachability(self, now: float, reachable: set[PeerName]) -> None:
        owners = self.ring.owners() if self.ring is not None else set()
        for owner in owners:
            if owner == self.me or owner in reachable:
                self.unreachable_since.pop(owner, None)
            else:
                self.unreachable_since.setdefault(owner, now)
        for name in list(self.unreachable_since):
            if name not in owners:
                del self.unreachable_since[name]
        self._reachable = reachable

    def _advance_founding(self, now: float, rng: random.Random | None) -> None:
        paxos = self.paxos
        if paxos is None or self.mode.kind != CONSENSUS:
            return
        changed = paxos.think()
        decided = paxos.consensus()
        if decided is not None:
            proposal, members = decided
            salt = pack([proposal.round, list(proposal.proposer)])
            self.synced = True  # a ring just decided by a quorum is the current one
            self._adopt(Ring.found(
                self.range.start, self.range.end, [PeerName(m) for m in members], salt
            ))
            return
        electors = {name for name, _uid in paxos.knowledge.claims}
        if not self.pending and not self.primed:
            # Founding is lazy, as in Weave: a router started alone and later
            # connected to a cluster must not have founded one of its own.
            if changed:
                self._broadcast = True
            return
        retry_due = self._proposed_at is None or (
            rng is not None and now - self._proposed_at >= PROPOSE_RETRY * (1 + rng.random())
        )
        if len(electors) >= self.mode.quorum and retry_due and rng is not None:
            paxos.propose(tuple(sorted(electors)))
            self._proposed_at = now
            paxos.think()
            changed = True
            decided = paxos.consensus()
            if decided is not None:
                proposal, members = decided
                salt = pack([proposal.round, list(proposal.proposer)])
                self.synced = True
                self._adopt(Ring.found(
                self.range.start, self.range.end, [PeerName(m) for m in members], salt
            ))
                return
        if changed:
            self._broadcast = True

    def _in_majority(self) -> bool:
        """Can we reach a strict majority of the peers that own live space?

        Only such a peer acknowledges reservations or reclaims: of two sides
        of a partition at most one has a majority, so a cut-off minority can
        neither take space from the others nor let its members grow theirs.
        """
        assert self.ring is not None
        voters = {e.owner for e in self.ring.entries.values() if not e.frozen}
        reachable = self._reachable | {self.me}
        return 2 * len(voters & reachable) > len(voters)

    def _give_acks(self) -> None:
        ring = self.ring
        assert ring is not None
        majority = self._in_majority()
        note = ring.notes.get(self.me)
        old = note.acks if note is not None else {}
        acks: dict[int, Ack] = {}
        for entry, _end in ring.ordered():
            if entry.owner == self.me or entry.frozen or ring.heir(entry.token) != self.me:
                continue
            if self._holds_addresses_in(entry.token, _end):
                # Addresses we handed out lie in another owner's entry: it was
                # made by a peer acting on a stale ring; never let it be used.
                continue
            want = Ack(entry.owner, entry.version, entry.reserved)
            given = old.get(entry.token)
            if given == want:
                acks[entry.token] = given
            elif majority and ring.origin_settled(entry.token):
                acks[entry.token] = want
                self.counters.acks_given += 1
            elif given is not None and given.owner == entry.owner:
                acks[entry.token] = given
        if ring.set_note(self.me, acks=acks):
            self.dirty = True
            self._broadcast = True

    def _holds_addresses_in(self, start: int, end: int) -> bool:
        return any(start <= address < end for address in self.user_of)

    def _reclaim(self, now: float) -> None:
        ring = self.ring
        assert ring is not None
        if not self._in_majority():
            return
        for entry, _end in list(ring.ordered()):
            if entry.owner == self.me or entry.frozen:
                continue
            since = self.unreachable_since.get(entry.owner)
            if since is None or now - since < self.reclaim_after:
                continue
            if self._majority_since is None or now - self._majority_since < self.reclaim_after:
                continue
            current = ring.entries.get(entry.token)
            if current is None or current != entry or ring.heir(entry.token) != self.me:
                continue
            if ring.reclaim(entry.token, self.me):
                self.counters.reclaims += 1
                self.counters.last_reclaim_at = now
                self.counters.reclaim_log.append((now, format_peer_name(entry.owner)))
                del self.counters.reclaim_log[:-32]
                self.dirty = True
                self._broadcast = True

    def _publish_free(self) -> None:
        assert self.ring is not None
        if self.ring.set_note(self.me, free=self.free_count()):
            self.dirty = True
            self._broadcast = True

    # ------------------------------------------------------------------ space

    def _usable_end(self, entry: Entry) -> int:
        assert self.ring is not None
        if entry.frozen:
            return min(entry.reserved, self.ring.range_end(entry.token))
        return self.ring.effective_reserved(entry.token)

    def _free_addresses(self, start: int, end: int) -> Iterator[int]:
        """Acknowledged, unallocated, usable addresses of ours in [start, end), in order.

        Each entry's scan starts at its hint (everything below it was taken when
        last looked at; a release lowers it), so allocating is not quadratic.
        """
        assert self.ring is not None
        for entry, _entry_end in self.ring.owned_by(self.me):
            token = entry.token
            hint = self._hint.get(token, token)
            low = max(token, start, self.floor.get(token, token), hint)
            high = min(self._usable_end(entry), end)
            for address in range(low, high):
                if address not in self.user_of and self.range.usable(address):
                    yield address

    def _find_free(self, start: int, end: int) -> int | None:
        address = next(self._free_addresses(start, end), None)
        if address is not None:
            assert self.ring is not None
            token = self.ring.entry_at(address).token
            if start <= self._hint.get(token, token):
                # Only a scan that began at the hint proves the addresses below
                # this one taken; a subnet search may have skipped free ones.
                self._hint[token] = address + 1
        return address

    def _available(self, start: int, end: int) -> int:
        """Acknowledged, unallocated addresses in [start, end) (capped at the pool)."""
        count = 0
        for _address in self._free_addresses(start, end):
            count += 1
            if count >= self.pool:
                break
        return count

    def _refill(self, start: int, end: int) -> None:
        """Keep a pool of acknowledged addresses ahead of demand."""
        if self._available(start, end) < max(1, self.pool // 2):
            self._extend(start, end)

    def _extend(self, start: int, end: int) -> int | None:
        """Ask for more reservation in [start, end); return the entry's token."""
        assert self.ring is not None
        for entry, entry_end in self.ring.owned_by(self.me):
            if entry.frozen or entry.reserved >= min(entry_end, end) or entry_end <= start:
                continue
            if entry.reserved > self._usable_end(entry) and entry.reserved > start:
                return entry.token  # already asked; waiting for the ack
            target = max(entry.reserved, start, self.floor.get(entry.token, entry.token))
            self.ring.extend(entry.token, min(target + self.pool, entry_end), self.me)
            self._note_written(entry.token)
            self.dirty = True
            self._broadcast = True
            return entry.token
        return None

    def _make_room(
        self, start: int, end: int, now: float, rng: random.Random | None = None
    ) -> str:
        """Start whatever gets us a free address in [start, end); return the reason."""
        assert self.ring is not None
        if self._available(start, end) > 0:
            return "ready"
        token = self._extend(start, end)
        if token is not None:
            return self._ack_reason(token, now)
        return self._ask_for_space(start, end, now, rng)

    def _ask_for_space(
        self, start: int, end: int, now: float, rng: random.Random | None
    ) -> str:
        ring = self.ring
        assert ring is not None
        for donor, asked_at in list(self._asked.items()):
            if now - asked_at < DONATION_RETRY:
                return f"asked peer {format_peer_name(donor)} for space {now - asked_at:.1f}s ago"
            del self._asked[donor]
        reachable = self._reachable
        candidates: list[tuple[PeerName, int]] = []
        for owner in sorted(ring.owners()):
            if owner == self.me or owner not in reachable:
                continue
            if now - self._denied.get(owner, -1e18) < DENIAL_MEMORY:
                continue
            note = ring.notes.get(owner)
            has_space = any(
                not e.frozen and e.token < end and entry_end > start
                for e, entry_end in ring.owned_by(owner)
            )
            if has_space and note is not None and note.free > 1:
                candidates.append((owner, note.free))
        if not candidates:
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
        self._asked[donor] = now
        self.counters.donations_asked += 1
        self._unicasts.append((donor, SpaceMessage(SPACE_REQUEST, start, end).encode()))
        return f"asked peer {format_peer_name(donor)} for space"

    def _ack_reason(self, token: int, now: float) -> str:
        assert self.ring is not None
        heir = self.ring.heir(token)
        if heir is None:
            return "reserving addresses"
        since = self.unreachable_since.get(heir)
        if since is None:
            return f"waiting for peer {format_peer_name(heir)} to acknowledge a reservation"
        waiting = (
            f"waiting for peer {format_peer_name(heir)} to acknowledge a reservation; it has "
            f"been unreachable for {now - since:.0f}s"
        )
        if not self._in_majority():
            return (
                f"{waiting}; no majority of the peers owning space is reachable, so nobody "
                "can reclaim it: if it is gone for good, run `meshrouter rmpeer "
                f"{format_peer_name(heir)}`"
            )
        return f"{waiting} (its space is reclaimed after {self.reclaim_after:.0f}s)"

    def _no_ring_reason(self) -> str:
        if self.paxos is not None and self.mode.kind == CONSENSUS:
            votes, quorum = self.paxos.votes()
            known = len({name for name, _ in self.paxos.knowledge.claims})
            return (
                f"awaiting consensus to found the address ring: {max(votes, 1)} of {quorum} "
                f"votes needed ({known} elector{'s' if known != 1 else ''} heard from)"
            )
        if self.mode.kind == SEED:
            return "waiting to learn the address ring from a seed peer"
        return "waiting to learn the address ring from a peer (this router observes)"

    def _refresh_reasons(self, now: float) -> None:
        if self.ring is not None and not self.synced:
            for request in self.pending.values():
                request.reason = UNSYNCED
        elif self.ring is None:
            reason = self._no_ring_reason()
            for request in self.pending.values():
                request.reason = reason

    def _wait(
        self,
        key: tuple[str, str, int, int],
        container: str,
        kind: str,
        subnet: tuple[int, int],
        address: int | None,
        now: float,
        reason: str,
    ) -> None:
        existing = self.pending.get(key)
        if existing is not None:
            existing.reason = reason
        else:
            self.pending[key] = Pending(container, kind, subnet, address, now, reason)

    def _record(self, container: str, address: int) -> None:
        addresses = self.allocations.setdefault(container, [])
        if len(addresses) >= MAX_ADDRESSES_PER_CONTAINER:
            raise IpamConflictError(
                f"container {container} already has {len(addresses)} addresses")
        addresses.append(address)
        self.user_of[address] = container
        self.counters.allocations += 1
        self.dirty = True
        for key in [k for k in self.pending if k[0] == container]:
            request = self.pending[key]
            if request.subnet[0] <= address < request.subnet[1]:
                del self.pending[key]

    # ------------------------------------------------------------------ figures

    def free_count(self) -> int:
        """Usable, unallocated addresses in our unfrozen entries."""
        if self.ring is None:
            return 0
        total = 0
        for entry, end in self.ring.owned_by(self.me):
            if entry.frozen:
                continue
            low = self.floor.get(entry.token, entry.token)
            size = end - low
            if low <= self.range.start < end:
                size -= 1
            if low < self.range.end <= end:
                size -= 1
            total += max(0, size)
        in_use = sum(1 for a in self.user_of if not self.ring.entry_at(a).frozen)
        return max(0, total - in_use)

    def status(self, now: float, reachable: set[PeerName]) -> dict[str, Any]:
        ring = self.ring
        peers: dict[PeerName, dict[str, Any]] = {}
        unreachable_space = 0
        if ring is not None:
            for entry, end in ring.ordered():
                row = peers.setdefault(entry.owner, {
                    "peer": format_peer_name(entry.owner),
                    "ranges": [], "size": 0, "reserved": 0, "frozen": 0,
                    "free": ring.notes[entry.owner].free if entry.owner in ring.notes else None,
                    "reachable": entry.owner == self.me or entry.owner in reachable,
                })
                row["ranges"].append(f"{format_address(entry.token)}-{format_address(end - 1)}")
                row["size"] += end - entry.token
                row["reserved"] += min(entry.reserved, end) - entry.token
                if entry.frozen:
                    row["frozen"] += end - entry.token
                if not row["reachable"]:
                    unreachable_space += end - entry.token
            if self.me in peers:
                peers[self.me]["free"] = self.free_count()
        if ring is not None:
            state = "ready"
        elif self.mode.kind == CONSENSUS and (self.pending or self.primed):
            state = "awaiting consensus"
        elif self.mode.kind == CONSENSUS:
            state = "idle (the ring is founded at the first allocation)"
        else:
            state = "waiting to learn the ring from a peer"
        return {
            "range": str(self.range),
            "cluster_id": self.cluster_id,
            "mode": self.mode.describe(),
            "state": state,
            "reclaim_after": self.reclaim_after,
            "peers": [peers[name] for name in sorted(peers)],
            "unreachable_ratio": unreachable_space / self.range.size if ring is not None else 0.0,
            "allocated": len(self.user_of),
            "containers": len(self.allocations),
            "pending": [
                {
                    "container": p.container,
                    "request": (
                        p.kind if p.address is None else f"claim {format_address(p.address)}"
                    ),
                    "waiting_s": round(now - p.since, 3),
                    "reason": p.reason,
                }
                for p in self.pending.values()
            ],
            "recent_reclaims": [
                {"ago_s": round(now - at, 1), "from": peer}
                for at, peer in self.counters.reclaim_log[-5:]
            ],
            "counters": {
                "allocations": self.counters.allocations,
                "releases": self.counters.releases,
                "reclaims": self.counters.reclaims,
                "donations_given": self.counters.donations_given,
                "donations_asked": self.counters.donations_asked,
                "conflicts": self.counters.conflicts,
            },
        }

    # ------------------------------------------------------------------ persistence

    def dump(self) -> bytes:
        return pack({
            "format": STATE_FORMAT,
            "range": str(self.range),
            "ring": self.ring.to_wire() if self.ring is not None else None,
            "allocations": {c: a for c, a in sorted(self.allocations.items())},
            "floor": [[t, f] for t, f in sorted(self.floor.items())],
        })

    def load(self, blob: bytes) -> None:
        """Restore from ``dump``; raise StateFileError (never reset silently)."""
        try:
            value = expect(unpack(blob), dict, "ipam state file")
            if value.get("format") != STATE_FORMAT:
                raise StateFileError(
                    f"IPAM state file has format {value.get('format')!r}; this version "
                    f"reads format {STATE_FORMAT}"
                )
            if value.get("range") != str(self.range):
                raise StateFileError(
                    f"IPAM state file was written for --ipalloc-range {value.get('range')}, "
                    f"but the router runs with {self.range}; start with the same range, or "
                    "`meshrouter reset` to leave the old cluster"
                )
            ring = Ring.from_wire(value["ring"]) if value.get("ring") is not None else None
            if ring is not None and (ring.start, ring.end) != (self.range.start, self.range.end):
                raise StateFileError(
                    f"IPAM state file is corrupt: its ring does not cover {self.range}"
                )
            allocations = expect(value.get("allocations", {}), dict, "allocations")
            floor = expect(value.get("floor", []), list, "floor")
            restored: dict[str, list[int]] = {}
            seen: set[int] = set()
            for container, addresses in allocations.items():
                _check_container(expect(container, str, "container"))
                restored[container] = []
                for a in expect(addresses, list, "addresses"):
                    address = expect(a, int, "address")
                    if not self.range.usable(address) or address in seen:
                        raise StateFileError(
                            f"IPAM state file is corrupt: address {address} of {container} is "
                            "outside the range or given twice"
                        )
                    seen.add(address)
                    restored[container].append(address)
            floors = {expect(t, int, "token"): expect(f, int, "floor") for t, f in floor}
        except StateFileError:
            raise
        except (MeshError, KeyError, TypeError, ValueError) as exc:
            raise StateFileError(f"IPAM state file is corrupt: {exc}") from None
        self.ring = ring
        self.paxos = None if ring is not None else self.paxos
        self.allocations = restored
        self.user_of = {a: c for c, addresses in restored.items() for a in addresses}
        self.floor = floors
        self.synced = ring is not None
        if ring is not None:
            self._written = {e.token: e.reserved for e, _ in ring.owned_by(self.me)}


def _check_container(container: str) -> None:
    if not container or len(container) > MAX_CONTAINER_ID or not container.isprintable():
        raise IpamInvalidError(
            f"container ID must be 1..{MAX_CONTAINER_ID} printable characters")


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:16]

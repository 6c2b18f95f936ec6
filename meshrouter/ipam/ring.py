"""Theory of operation: the ring, a CRDT that gives every address one owner.

The allocation range is cut at *tokens*; the entry at a token owns the addresses
from it up to the next token (the last one up to the end of the range).  The
first token is always the start of the range, so the entries partition the
range whatever set of tokens a replica knows: conservation is structural.

Only an entry's owner edits it, bumping its version, and merging keeps, per
token, the entry with the highest version (ties broken by a fixed order, so the
merge is commutative, associative and idempotent).  New tokens appear only
when an owner splits its own range (a donation), or when a reclaimer splits a
dead peer's range at the point that peer promised never to pass (below).  The
records (``Entry``, ``Note``, ``Ack``) and their checked wire form are in
``ring_records.py``.

**Reservations and heirs -- how reclaim can never duplicate.**  An owner hands
out addresses only from the *reserved prefix* ``[token, reserved)`` of its
entries.  To extend a prefix it bumps ``reserved`` and waits until its *heir*
acknowledges the new value.  The heir of an entry is the owner of the nearest
preceding entry that is neither the same owner's nor frozen; it is the only
peer that may reclaim the entry, and its acknowledgements live in its own
``Note`` in this ring, so they travel with every copy of the ring.

When an owner has been unreachable for the reclaim delay, its heir reclaims
the entry: the part above the highest reservation anyone acknowledged becomes
the heir's (a new token), and the entry itself is *frozen* at that point -- the
old owner keeps every address it may have handed out, and may hand them out
again, but can never extend.  Whatever the old owner did while it was cut off
stayed inside acknowledged reservations, so no address ever has two users,
however long the partition lasted.  A reclaim bumps the version by
``FREEZE_BUMP`` so that no edit the cut-off owner made meanwhile (all of them
unacknowledged, hence unused) can outrank it.

A donation splits the donor's entry; the new entry records its *origin* (the
donor's token and version after the split).  The donor acknowledges the
recipient's reservations only once its own heir has acknowledged that version,
so the peer that could reclaim the donor's entry always knows about the split
before the recipient uses any of it -- or once the donor's entry was reclaimed
(frozen) by a peer that knew the split: a frozen entry is acknowledged by
nobody and never reclaimed again.  Founding entries have no origin.

Who may acknowledge and reclaim is decided by a *majority of the live
addresses* (``majority.py``: addresses, unlike owners, are conserved by
donations, so two sides of a partition never both count a majority), and an
heir reclaims an entry only if the entry's heir has been itself or a peer it
reaches all the time the owner has been out of reach (``reclaim.py``: a heir
cut off with the owner may have acknowledged more in the window before a
partition is noticed).

Residual assumption (documented in docs/architecture.md): an acknowledgement
reaches the rest of the mesh before its author, the acknowledged owner and
every copy of it fail at once (crashes, not partitions: a partition leaves the
author's side holding the copies).  Acknowledgements are broadcast when made.
"""

from __future__ import annotations

import bisect
import hashlib
import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from meshrouter.codec import expect, pack, unpack
from meshrouter.errors import (
    ClusterMismatchError,
    IpamConflictError,
    IpamError,
    IpamInvalidError,
    MalformedMessageError,
)
from meshrouter.ipam.ring_records import (
    MAX_ENTRIES,
    MAX_NOTES,
    MAX_VERSION,
    Ack,
    Entry,
    Note,
    checked_int,
    checked_list,
    checked_name,
    entries_from_wire,
    entries_to_wire,
    notes_from_wire,
    notes_to_wire,
)
from meshrouter.names import PeerName, format_peer_name

__all__ = [
    "FREEZE_BUMP", "MAX_CLUSTER_ID", "MAX_ENCODED", "MAX_ENTRIES", "MAX_NOTES", "MAX_VERSION",
    "Ack", "Entry", "Note", "Ring",
]

FREEZE_BUMP = 1 << 32
MAX_CLUSTER_ID = 64
MAX_ENCODED = 16 * 1024 * 1024


class Ring:
    """The replicated ring: range, cluster identity, entries and notes."""

    def __init__(
        self,
        start: int,
        end: int,
        cluster_id: str,
        members: tuple[PeerName, ...],
        entries: dict[int, Entry],
        notes: dict[PeerName, Note] | None = None,
    ) -> None:
        self.start = start
        self.end = end
        self.cluster_id = cluster_id
        self.members = members
        self.entries = entries
        self.notes: dict[PeerName, Note] = notes if notes is not None else {}
        self._tokens: list[int] | None = None

    # ------------------------------------------------------------------ founding

    @classmethod
    def found(cls, start: int, end: int, members: Iterable[PeerName], salt: bytes = b"") -> Ring:
        """The ring every founder computes alike: the range cut into equal shares.

        The cluster ID hashes the range, the members and ``salt`` (the decided
        Paxos proposal, or nothing for a seed list), so two clusters founded
        apart differ even with the same members.
        """
        names = tuple(sorted(set(members)))
        if not names:
            raise IpamInvalidError("a ring needs at least one founding member")
        size = end - start
        if len(names) > size:
            raise IpamInvalidError(f"{len(names)} founders cannot share {size} addresses")
        entries: dict[int, Entry] = {}
        for i, name in enumerate(names):
            token = start + (size * i) // len(names)
            entries[token] = Entry(token, name, 0, token)
        digest = hashlib.sha256(
            pack([start, end, list(names), salt])
        ).hexdigest()[:16]
        return cls(start, end, digest, names, entries)

    # ------------------------------------------------------------------ structure

    def tokens(self) -> list[int]:
        if self._tokens is None:
            self._tokens = sorted(self.entries)
        return self._tokens

    def _changed(self) -> None:
        self._tokens = None

    def range_end(self, token: int) -> int:
        tokens = self.tokens()
        i = bisect.bisect_right(tokens, token)
        return tokens[i] if i < len(tokens) else self.end

    def entry_at(self, address: int) -> Entry:
        """The entry whose range contains ``address`` (inside the ring's range)."""
        tokens = self.tokens()
        i = bisect.bisect_right(tokens, address) - 1
        return self.entries[tokens[max(i, 0)]]

    def ordered(self) -> Iterator[tuple[Entry, int]]:
        """Every entry with the end of its range, in address order."""
        tokens = self.tokens()
        for i, token in enumerate(tokens):
            yield self.entries[token], tokens[i + 1] if i + 1 < len(tokens) else self.end

    def owned_by(self, name: PeerName) -> list[tuple[Entry, int]]:
        return [(e, end) for e, end in self.ordered() if e.owner == name]

    def owners(self) -> set[PeerName]:
        return {e.owner for e in self.entries.values()}

    def heir(self, token: int, owner: PeerName | None = None) -> PeerName | None:
        """Who acknowledges (and may reclaim) the entry at ``token``, or None;
        with ``owner``, who would if that peer owned the entry."""
        tokens = self.tokens()
        owner = self.entries[token].owner if owner is None else owner
        i = tokens.index(token)
        for step in range(1, len(tokens)):
            candidate = self.entries[tokens[(i - step) % len(tokens)]]
            if candidate.owner != owner and not candidate.frozen:
                return candidate.owner
        return None

    def effective_reserved(self, token: int) -> int:
        """The end of the prefix the entry's owner may hand out addresses from."""
        entry = self.entries[token]
        limit = min(entry.reserved, self.range_end(token))
        heir = self.heir(token)
        if heir is None:
            return limit
        note = self.notes.get(heir)
        ack = note.acks.get(token) if note is not None else None
        if ack is None or ack.owner != entry.owner:
            return entry.token
        return max(entry.token, min(limit, ack.reserved))

    def reclaim_floor(self, token: int) -> int:
        """The highest reservation of the entry anyone knows of (never reused)."""
        entry = self.entries[token]
        floor = entry.reserved
        for note in self.notes.values():
            ack = note.acks.get(token)
            if ack is not None and ack.owner == entry.owner:
                floor = max(floor, ack.reserved)
        return min(max(floor, entry.token), self.range_end(token))

    def split_lost(self, token: int) -> bool:
        """True while the split that created this entry cannot settle: its donor
        entry was frozen by a reclaimer that did not know the split (and may
        have taken the space).  Nobody acknowledges the entry then; only an
        ``rmpeer`` of the donor (which unfreezes its entry) can change that."""
        origin = self.entries[token].origin
        if origin is None:
            return False
        donor = self.entries.get(origin[0])
        return donor is not None and donor.frozen and not self.origin_settled(token)

    def origin_settled(self, token: int) -> bool:
        """True when the split that created this entry is known to the donor's heir."""
        origin = self.entries[token].origin
        if origin is None:
            return True
        donor_token, donor_version = origin
        donor = self.entries.get(donor_token)
        if donor is None:
            return False
        if donor.frozen:
            # Reclaimed: nobody acknowledges a frozen entry, so no ack can come.
            # Its version says what the reclaimer knew: at least the split's
            # version (plus the freeze bump) means it knew the split and took
            # none of the recipient's space; it can never reclaim again.
            return donor.version >= donor_version + FREEZE_BUMP
        if self.heir(donor_token) is None:
            return True
        return any(
            (ack := note.acks.get(donor_token)) is not None and ack.version >= donor_version
            for note in self.notes.values()
        )

    # ------------------------------------------------------------------ owner edits

    def _own(self, token: int, me: PeerName) -> Entry:
        entry = self.entries.get(token)
        if entry is None or entry.owner != me:
            raise IpamError(f"the entry at {token} is not ours")
        if entry.frozen:
            raise IpamConflictError("the entry was reclaimed while we were unreachable (frozen)")
        return entry

    def extend(self, token: int, reserved: int, me: PeerName) -> None:
        """Ask to reserve up to ``reserved`` (effective once the heir acks)."""
        entry = self._own(token, me)
        reserved = min(reserved, self.range_end(token))
        if reserved > entry.reserved:
            self.entries[token] = replace(entry, version=entry.version + 1, reserved=reserved)

    def donate(self, token: int, split_at: int, recipient: PeerName, me: PeerName) -> Entry:
        """Give [split_at, end of the entry) to ``recipient``; return the new entry.

        The split may fall inside our reservation: the reservation then ends at
        ``split_at``.  Only the owner knows which reserved addresses it handed
        out, so the caller guarantees it uses none at or above ``split_at``
        (``donation.py``).  That is no less safe than giving unreserved space:
        an heir that missed the split still never reclaims below the old
        reservation, and the recipient uses the space only once the donor's
        heir has acknowledged the split (``origin_settled``).
        """
        entry = self._own(token, me)
        if not token < split_at < self.range_end(token):
            raise IpamError("cannot donate foreign space")
        donor = replace(entry, version=entry.version + 1,
                        reserved=min(entry.reserved, split_at))
        self.entries[token] = donor
        new = Entry(split_at, recipient, 0, split_at, origin=(token, donor.version))
        self.entries[split_at] = new
        self._changed()
        return new

    def transfer(self, token: int, recipient: PeerName, me: PeerName) -> None:
        """Hand a whole entry (nothing reserved) to ``recipient`` (used by reset)."""
        entry = self._own(token, me)
        self.entries[token] = Entry(token, recipient, entry.version + 1, token)

    def reclaim(self, token: int, me: PeerName) -> bool:
        """As the entry's heir, take everything above its reclaim floor.

        Returns False when there was nothing to take (all of it reserved).
        """
        entry = self.entries[token]
        if entry.owner == me or entry.frozen or self.heir(token) != me:
            raise IpamError("only the heir may reclaim an entry")
        floor = self.reclaim_floor(token)
        end = self.range_end(token)
        if floor >= end:
            return False
        version = entry.version + FREEZE_BUMP
        if floor <= token:
            self.entries[token] = Entry(token, me, version, token)
        else:
            self.entries[token] = replace(entry, version=version, reserved=floor, frozen=True)
            self.entries[floor] = Entry(floor, me, 0, floor)
            self._changed()
        return True

    def take_over(self, name: PeerName, me: PeerName) -> int:
        """``rmpeer``: the operator says ``name`` is gone for good; take all its
        entries, frozen ones included.  Returns the number of addresses taken."""
        taken = 0
        for entry, end in self.owned_by(name):
            self.entries[entry.token] = Entry(
                entry.token, me, entry.version + FREEZE_BUMP, entry.token
            )
            taken += end - entry.token
        return taken

    def set_note(self, me: PeerName, *, free: int | None = None,
                 acks: dict[int, Ack] | None = None) -> bool:
        """Update our own note; returns True if it changed."""
        note = self.notes.get(me, Note())
        new_free = note.free if free is None else free
        new_acks = note.acks if acks is None else acks
        if new_free == note.free and new_acks == note.acks:
            return False
        self.notes[me] = Note(note.version + 1, new_free, dict(new_acks))
        return True

    # ------------------------------------------------------------------ CRDT

    def same_cluster(self, other: Ring) -> None:
        """Raise with what to do when two rings can never be merged."""
        if (other.start, other.end) != (self.start, self.end):
            raise ClusterMismatchError(
                f"the peer allocates from another range ({_cidr(other.start, other.end)}, ours is "
                f"{_cidr(self.start, self.end)}); give both the same --ipalloc-range"
            )
        if other.cluster_id != self.cluster_id:
            raise ClusterMismatchError(
                f"the peer's address ring belongs to cluster {other.cluster_id} (founded by "
                f"{_names(other.members)}), ours to cluster {self.cluster_id} (founded by "
                f"{_names(self.members)}). Two separately founded clusters never merge: "
                "pick the cluster to keep, then run `meshrouter reset` on the routers of the "
                "other one (or restart them with an empty --data-dir) so they join it"
            )

    def merge(self, other: Ring) -> bool:
        """Merge ``other`` into self (never mutating it); True if anything changed."""
        self.same_cluster(other)
        changed = False
        for token, theirs in other.entries.items():
            ours = self.entries.get(token)
            if ours is None or theirs.rank() > ours.rank():
                self.entries[token] = theirs
                changed = True
                if ours is None:
                    self._tokens = None
        for name, note in other.notes.items():
            mine = self.notes.get(name)
            if mine is None or note.rank() > mine.rank():
                self.notes[name] = note
                changed = True
        return changed

    def copy(self) -> Ring:
        return Ring(
            self.start, self.end, self.cluster_id, self.members,
            dict(self.entries), dict(self.notes),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ring):
            return NotImplemented
        return (
            self.start, self.end, self.cluster_id, self.members, self.entries, self.notes
        ) == (other.start, other.end, other.cluster_id, other.members, other.entries, other.notes)

    __hash__ = None  # type: ignore[assignment]

    def fingerprint(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()[:16]

    def version_sum(self) -> int:
        return sum(e.version for e in self.entries.values()) + sum(
            n.version for n in self.notes.values()
        )

    # ------------------------------------------------------------------ wire

    def to_wire(self) -> list[Any]:
        return [self.start, self.end, self.cluster_id, list(self.members),
                entries_to_wire(self.entries), notes_to_wire(self.notes)]

    def encode(self) -> bytes:
        return pack(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> Ring:
        return cls.from_wire(unpack(data, max_size=MAX_ENCODED))

    @classmethod
    def from_wire(cls, value: Any) -> Ring:
        fields = expect(value, list, "ring")
        if len(fields) != 6:
            raise MalformedMessageError("ring: expected 6 fields")
        start = checked_int(fields[0], "ring start", 0, 1 << 32)
        end = checked_int(fields[1], "ring end", start + 1, (1 << 32) + 1)
        cluster_id = expect(fields[2], str, "cluster id")
        if len(cluster_id) > MAX_CLUSTER_ID:
            raise MalformedMessageError("cluster id too long")
        members = tuple(checked_name(m) for m in checked_list(fields[3], "members", MAX_NOTES))
        entries = entries_from_wire(fields[4], start, end)
        if start not in entries:
            raise MalformedMessageError("ring: no entry at the start of the range")
        notes = notes_from_wire(fields[5], start, end)
        return cls(start, end, cluster_id, members, entries, notes)


def _cidr(start: int, end: int) -> str:
    size = end - start
    prefix = 32 - (size.bit_length() - 1)
    return f"{ipaddress.IPv4Address(start)}/{prefix}"


def _names(names: tuple[PeerName, ...]) -> str:
    shown = ", ".join(format_peer_name(n) for n in names[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")

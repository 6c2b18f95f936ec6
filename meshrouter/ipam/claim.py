"""Theory of operation: claiming one given address (``IpamCore.claim``).

A container may ask for a particular address -- one it had before a restart of
its host, say.  Only the owner of the entry holding the address may give it,
and only inside the prefix its heir acknowledged (``ring.py``); so a claim is
met at once when the address lies in our acknowledged prefix, waits when our
reservation must first grow up to it (we extend and the heir acknowledges),
and is refused -- with what to do instead -- when another peer owns the
address, when it lies below the floor of a router restarted without its data
(an earlier incarnation may have handed it out), or when our entry was frozen
by a reclaim while we were away (we may never extend it again).
"""

from __future__ import annotations

from meshrouter.errors import IpamConflictError
from meshrouter.ipam.address_range import format_address
from meshrouter.ipam.allocations import Allocations
from meshrouter.ipam.outbox import Outbox
from meshrouter.ipam.ring import Ring
from meshrouter.names import PeerName, format_peer_name


def claim_address(ring: Ring, me: PeerName, local: Allocations, address: int,
                  out: Outbox) -> int | None:
    """The token of our entry holding ``address`` if we may hand it out now; None
    when we extended our reservation up to it and wait for the acknowledgement.

    Raises IpamConflictError when it can never be ours here.
    """
    entry = ring.entry_at(address)
    if entry.owner != me:
        raise IpamConflictError(
            f"{format_address(address)} belongs to peer {format_peer_name(entry.owner)}; "
            "claim it there (or release it there first)")
    if address < local.floor.get(entry.token, entry.token):
        raise IpamConflictError(
            f"{format_address(address)} may still be in use from before this router "
            "restarted without its data; it cannot be claimed")
    if address < local.usable_end(ring, entry):
        return entry.token
    if entry.frozen:
        raise IpamConflictError(
            f"{format_address(address)} was reclaimed by another peer while this router "
            "was unreachable")
    ring.extend(entry.token, address + 1, me)
    local.note_written(ring, entry.token)
    out.changed()
    return None

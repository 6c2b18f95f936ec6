"""Theory of operation: the VXLAN VNI layout and per-peer datapath IDs.

Weave packs ``src short ID | dst short ID << 12`` into the 24-bit VNI, which
caps a mesh at 4,096 peers.  meshrouter puts only *one* peer in the VNI, plus
one bit saying what kind of packet it is::

    bit 23      bits 22..0
    0           datapath ID of the destination peer   (unicast)
    1           datapath ID of the origin peer        (broadcast / multicast)

VNI 0 and datapath ID 0 are never used, so a frame with VNI 0 (a stray
kernel VXLAN device, a misconfigured peer) matches no flow and is dropped.

Why this is enough:

* **Unicast needs only the destination.**  A host that receives VNI ``d``
  delivers to its own ports when ``d`` is its own ID, and otherwise relays:
  it re-tunnels the unchanged VNI toward its next hop for ``d``.  That is the
  multi-hop relay in a partial mesh, decided by one exact-match flow per
  peer, never per endpoint.  The source is not needed to forward; the
  receiving host only delivers to a local port whose MAC is the frame's
  destination, and the sending host enforced anti-spoofing at its ingress.
* **Broadcast needs only the origin.**  Broadcast frames follow the origin's
  spanning tree (``Routes.broadcast_next_hops(origin)``): a host receiving
  broadcast VNI ``o`` delivers to its local ports and re-tunnels to its
  children in ``o``'s tree.  Each host is in the tree once, so each host gets
  each frame once on a stable topology.
* **23 bits of ID, no cap at 4,096.**  IDs are derived from the peer name
  (``blake2b`` of the 48-bit name, reduced to 1..2**23-1), so every router
  computes the same ID for a peer without coordination.  Collisions among
  the known peers (probability ~N**2 / 2**24: about 3 % for 1,000 peers) are
  resolved deterministically: peers are taken in order of (hash, name) and a
  peer whose slot is taken moves to the next free slot.  Two routers that
  know the same peer set therefore agree on every ID.  While they know
  different sets (a join in flight) a colliding pair may be numbered
  differently; a frame then reaches a host that is not its destination,
  which relays it or drops it (it delivers only to its own ports' MACs), and
  relays decrement the inner TTL, so a transient disagreement can lose
  frames but never loop forever or deliver to the wrong container.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from meshrouter.names import PeerName

ID_BITS = 23
ID_SPACE = 1 << ID_BITS
BROADCAST_BIT = 1 << ID_BITS
VNI_MAX = (1 << 24) - 1


def preferred_id(name: PeerName) -> int:
    """The ID ``name`` gets unless another known peer holds that slot (1..2**23-1)."""
    digest = hashlib.blake2b(name.to_bytes(6, "big"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (ID_SPACE - 1) + 1


def assign_ids(names: Iterable[PeerName]) -> dict[PeerName, int]:
    """Datapath ID of every peer in ``names``: deterministic for a given set."""
    ranked = sorted((preferred_id(name), name) for name in set(names))
    taken: set[int] = set()
    ids: dict[PeerName, int] = {}
    for slot, name in ranked:
        while slot in taken:
            slot = slot % (ID_SPACE - 1) + 1  # wrap within 1..ID_SPACE-1
        taken.add(slot)
        ids[name] = slot
    return ids


def unicast_vni(dst_id: int) -> int:
    """The VNI of a frame addressed to a container on the peer with ``dst_id``."""
    _check_id(dst_id)
    return dst_id


def broadcast_vni(origin_id: int) -> int:
    """The VNI of a broadcast/multicast frame first tunnelled by ``origin_id``."""
    _check_id(origin_id)
    return BROADCAST_BIT | origin_id


def decode_vni(vni: int) -> tuple[bool, int]:
    """(is_broadcast, peer ID) of a VNI; ValueError for VNI 0 or out of range."""
    if not 0 < vni <= VNI_MAX or vni & (ID_SPACE - 1) == 0:
        raise ValueError(f"VNI {vni:#x} is not one of ours")
    return bool(vni & BROADCAST_BIT), vni & (ID_SPACE - 1)


def _check_id(peer_id: int) -> None:
    if not 0 < peer_id < ID_SPACE:
        raise ValueError(f"datapath ID {peer_id} out of range 1..{ID_SPACE - 1}")

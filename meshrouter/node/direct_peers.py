"""The user's direct peers (``connect``/``forget``), persisted in the data dir.

Direct peers are the addresses the user asked us to dial; they are redialled
forever (with backoff) and survive restarts.  The list is written before the
running state changes, so a failing disk leaves both the file and the running
state as they were.
"""

from __future__ import annotations

import trio

from meshrouter.codec import pack, unpack
from meshrouter.config import normalise_peer_address
from meshrouter.dialing.targets import TargetTable
from meshrouter.errors import InvalidRequestError, MeshError, StateFileError
from meshrouter.storage import Storage

DIRECT_PEERS_KEY = "direct-peers"
MAX_DIRECT_PEERS = 1024


class DirectPeers:
    """Loads, changes and saves the direct-peer list of one router."""

    def __init__(self, storage: Storage, targets: TargetTable) -> None:
        self.storage = storage
        self.targets = targets

    def load(self, initial: tuple[str, ...]) -> None:
        """Dial ``initial`` plus the persisted list; raise StateFileError if corrupt."""
        stored = self.storage.load(DIRECT_PEERS_KEY)
        peers: list[str] = list(initial)
        if stored is not None:
            try:
                value = unpack(stored)
            except MeshError as exc:
                raise StateFileError(f"direct peers file is corrupt: {exc}") from None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise StateFileError("direct peers file is corrupt: expected a list of addresses")
            peers += value
        self.targets.add_direct([normalise_peer_address(p) for p in peers], trio.current_time())
        self._save(self.targets.direct_addresses())

    def connect(self, peers: list[str], *, replace: bool = False) -> list[str]:
        """Add direct peers (``HOST[:PORT]``); return their normalised addresses."""
        addresses = [normalise_peer_address(p) for p in peers]
        current = [] if replace else self.targets.direct_addresses()
        wanted = sorted(set(current) | set(addresses))
        if len(wanted) > MAX_DIRECT_PEERS:
            raise InvalidRequestError(f"at most {MAX_DIRECT_PEERS} direct peers are allowed")
        self._save(wanted)
        self.targets.add_direct(addresses, trio.current_time(), replace=replace)
        return addresses

    def forget(self, peers: list[str]) -> list[str]:
        """Stop redialling these direct peers; return the ones that were unknown."""
        addresses = [normalise_peer_address(p) for p in peers]
        self._save(sorted(set(self.targets.direct_addresses()) - set(addresses)))
        return self.targets.forget(addresses)

    def clear(self) -> None:
        """``reset``: a restarted router joins only the peers it is then given."""
        self._save([])

    def _save(self, addresses: list[str]) -> None:
        self.storage.save(DIRECT_PEERS_KEY, pack(addresses))

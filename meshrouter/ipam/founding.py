"""How a cluster's ring comes to exist (``--ipalloc-init``).

* ``consensus[=N]``: the electors run Paxos over gossip and agree on the set of
  founders; N is the expected number of electors (default: this router plus its
  initial peers), the quorum is N // 2 + 1.
* ``seed=NAME,...``: the named peers found the ring at once, no vote.
* ``observer``: never votes nor founds; waits to learn a ring from a peer.

Any router whose ring is empty joins the first ring it hears of, whatever its
mode: founding only matters for the very first routers of a cluster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshrouter.errors import ConfigError
from meshrouter.names import PeerName, parse_peer_name

CONSENSUS = "consensus"
SEED = "seed"
OBSERVER = "observer"


@dataclass(frozen=True, slots=True)
class FoundingMode:
    kind: str
    electors: int = 1
    seeds: tuple[PeerName, ...] = ()

    @property
    def quorum(self) -> int:
        return self.electors // 2 + 1

    def describe(self) -> str:
        if self.kind == CONSENSUS:
            return f"consensus of {self.electors} (quorum {self.quorum})"
        if self.kind == SEED:
            return f"seed ({len(self.seeds)} founders)"
        return "observer"


def parse_founding(text: str | None, initial_peer_count: int) -> FoundingMode:
    """Parse ``--ipalloc-init``; the default is consensus among the initial peers."""
    if text is None or not text.strip():
        return FoundingMode(CONSENSUS, electors=initial_peer_count + 1)
    text = text.strip()
    kind, _, arg = text.partition("=")
    if kind == CONSENSUS:
        if not arg:
            return FoundingMode(CONSENSUS, electors=initial_peer_count + 1)
        if not re.fullmatch(r"-?[0-9]+", arg):
            raise ConfigError(f"--ipalloc-init consensus={arg!r}: N must be a number")
        electors = int(arg)
        if not 1 <= electors <= 4096:
            raise ConfigError(f"--ipalloc-init consensus={electors}: N must be 1..4096")
        return FoundingMode(CONSENSUS, electors=electors)
    if kind == SEED:
        names = [part for part in arg.split(",") if part.strip()]
        if not names:
            raise ConfigError("--ipalloc-init seed= needs at least one peer name")
        seeds = tuple(sorted({parse_peer_name(n.strip()) for n in names}))
        return FoundingMode(SEED, seeds=seeds)
    if kind == OBSERVER and not arg:
        return FoundingMode(OBSERVER)
    raise ConfigError(
        f"--ipalloc-init {text!r}: expected consensus[=N], seed=NAME[,NAME...] or observer"
    )

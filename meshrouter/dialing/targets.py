"""Theory of operation: the table of addresses this router dials.

A *target* is an address we want a connection to.  Targets are *direct* (given by
the user with ``launch peer PEER`` or ``connect``; persisted) or *discovered*
(learned from the topology so that the mesh becomes full without being told every
address).  Each target moves through these states:

* ``connecting``  -- a dial or handshake is in progress;
* ``established`` -- a connection to the peer behind it is up (ours, or an inbound
  one from the same peer that won the duplicate tie-break);
* ``retrying``    -- the last attempt failed or the connection ended; the next try
  is at ``next_attempt`` following the jittered backoff of ``backoff.py``;
* ``failed``      -- the error can never go away by retrying (we dialled ourselves,
  or a name collision); kept so that status can say why.

``info`` always says why a target is in its state.  ``forget`` only removes the
address from the direct set: a live connection stays, but is not redialled when it
ends (Weave's semantics).  Discovered targets that the topology no longer suggests
are dropped unless a connection to them is up or being made -- or, for ``linger``
seconds, unless we lost a connection to them: a partition that isolates us makes
the topology forget every peer beyond it, and the addresses of the neighbours we
just lost are then the only way back into the mesh.  (Weave forgot them too; a
router cut off from its side of a re-split network stayed alone until a human
connected it, while its lost neighbours sat in its own network component.)

A target is not dialled while an inbound connection from its host is in
handshake (``hold``/``release``, the accept throttle's wait included): most
likely that is the peer behind the target dialling us.  Dialling back makes a
duplicate, and when ours completes first and the link is announced, the
tie-break keeps the later connection half of the time: the link flips
direction and both ends broadcast their records again.  (In a full-mesh join
the mesh dials the higher-named joiner at once, the joiner's accept throttle
admits 20 a second, and the joiner's own deferred dials to the peers still
waiting made a duplicate each.)  The hold ends with the handshake; if that
was another peer at the same host, the target is dialled then.  A target
waits at most ``HOLD_LIMIT`` past its due time, however many handshakes from
its host follow one another (a stranger at a peer's address must not keep us
from dialling the peer).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from meshrouter.dialing.backoff import BackoffPolicy
from meshrouter.dialing.inbound_limits import source_host
from meshrouter.names import PeerName

HOLD_LIMIT = 10.0
"""The longest a due target waits for inbound handshakes from its host (the
default handshake timeout: one such handshake never lasts longer)."""


class TargetState(StrEnum):
    """Where a target is in its life cycle (the values appear in the API)."""

    CONNECTING = "connecting"
    RETRYING = "retrying"
    FAILED = "failed"
    ESTABLISHED = "established"


@dataclass(slots=True)
class Target:
    """One address and what we know about dialling it."""

    address: str
    direct: bool
    state: TargetState = TargetState.RETRYING
    failures: int = 0
    next_attempt: float = 0.0
    info: str = "not tried yet"
    peer: PeerName | None = None
    connected_since: float | None = None
    priority: int = 0
    lost_at: float | None = None
    """When a connection to this target last ended (None: never, or up since)."""
    suggested: bool = True
    """Whether the topology suggests it now (discovered targets only)."""


@dataclass(frozen=True, slots=True)
class TargetStatus:
    """Read-only view of a target for status output."""

    address: str
    direct: bool
    state: str
    info: str
    attempts: int
    next_attempt_in: float | None
    peer: PeerName | None


class TargetTable:
    """All targets, keyed by address; every method takes ``now`` explicitly."""

    def __init__(self, policy: BackoffPolicy | None = None, *, linger: float = 300.0) -> None:
        self.policy = policy or BackoffPolicy()
        self.linger = linger
        self._targets: dict[str, Target] = {}
        self._held: Counter[str] = Counter()
        """Hosts with inbound connections in handshake (how many each)."""

    def _lingers(self, target: Target, now: float) -> bool:
        """A lost neighbour's address is kept for ``linger`` seconds after the loss."""
        return target.lost_at is not None and now - target.lost_at < self.linger

    def __contains__(self, address: str) -> bool:
        return address in self._targets

    def get(self, address: str) -> Target | None:
        return self._targets.get(address)

    def direct_addresses(self) -> list[str]:
        """Addresses the user asked for (these are persisted)."""
        return sorted(a for a, t in self._targets.items() if t.direct)

    def add_direct(self, addresses: list[str], now: float, *, replace: bool = False) -> None:
        """Add user-given targets and try them now; ``replace`` forgets the others first."""
        if replace:
            for stale in list(self._targets.values()):
                if stale.address not in addresses:
                    self._drop_direct(stale)
        for address in addresses:
            target = self._targets.get(address)
            if target is None:
                self._targets[address] = Target(address, direct=True, next_attempt=now)
                continue
            target.direct = True
            if target.state in (TargetState.RETRYING, TargetState.FAILED):
                target.state = TargetState.RETRYING
                target.next_attempt = now
                target.info = "retrying now at the user's request"

    def forget(self, addresses: list[str]) -> list[str]:
        """Stop redialling these addresses; return those that were not known."""
        unknown = []
        for address in addresses:
            target = self._targets.get(address)
            if target is None or not target.direct:
                unknown.append(address)
                continue
            self._drop_direct(target)
        return unknown

    def _drop_direct(self, target: Target) -> None:
        target.direct = False
        if target.state in (TargetState.RETRYING, TargetState.FAILED):
            del self._targets[target.address]

    def set_discovered(
        self, candidates: dict[str, tuple[PeerName, float, int]], now: float
    ) -> None:
        """Replace the discovered set: ``address -> (peer, delay, priority)``.

        New targets are first tried after their delay, lower priority first
        among targets due together; targets the topology no longer suggests are
        dropped unless a connection is up or being made.
        """
        for address, (peer, delay, priority) in candidates.items():
            target = self._targets.get(address)
            if target is None:
                self._targets[address] = Target(
                    address, direct=False, next_attempt=now + delay, peer=peer,
                    info="discovered from topology", priority=priority,
                )
            else:
                target.priority = priority
                if not target.suggested and target.state is TargetState.RETRYING:
                    # A lingering address suggested again (the peer, or a new one
                    # at its address, is known again): dialled as discovery dials
                    # a new target, so the higher-named end still defers.
                    target.next_attempt = now + delay
                    target.peer = peer
                target.suggested = True
        for target in list(self._targets.values()):
            if target.direct or target.address in candidates:
                continue
            target.suggested = False
            if (target.state in (TargetState.RETRYING, TargetState.FAILED)
                    and not self._lingers(target, now)):
                del self._targets[target.address]

    def hold(self, inbound_address: str) -> None:
        """An inbound connection from ``inbound_address`` entered its handshake:
        targets at its host wait until ``release`` (see the module docstring)."""
        self._held[source_host(inbound_address)] += 1

    def release(self, inbound_address: str) -> None:
        """That inbound handshake ended (established, refused or failed)."""
        host = source_host(inbound_address)
        self._held[host] -= 1
        if self._held[host] <= 0:
            del self._held[host]

    def _held_until(self, target: Target) -> float:
        """When ``target`` may be dialled: its next attempt, or up to ``HOLD_LIMIT``
        later while an inbound handshake from its host is under way."""
        if self._held and source_host(target.address) in self._held:
            return target.next_attempt + HOLD_LIMIT
        return target.next_attempt

    def due(self, now: float) -> list[str]:
        """Targets whose next attempt has come, oldest first (ties by address), but
        not those held by an inbound handshake from their host; a lost neighbour the
        topology no longer suggests is dropped once it stops lingering."""
        for target in list(self._targets.values()):
            if (not target.direct and not target.suggested
                    and target.state is TargetState.RETRYING and not self._lingers(target, now)):
                del self._targets[target.address]
        ready = [
            t
            for t in self._targets.values()
            if t.state is TargetState.RETRYING and self._held_until(t) <= now
        ]
        ready.sort(key=lambda t: (t.next_attempt, t.priority, t.address))
        return [t.address for t in ready]

    def next_wakeup(self, *, direct_only: bool = False) -> float | None:
        """Earliest time at which some (direct) target becomes due; a held target
        at the end of its hold (``release`` is followed by a wake-up)."""
        times = [
            self._held_until(t)
            for t in self._targets.values()
            if t.state is TargetState.RETRYING and (t.direct or not direct_only)
        ]
        return min(times) if times else None

    def dial_started(self, address: str) -> None:
        target = self._targets[address]
        target.state = TargetState.CONNECTING
        target.info = f"connecting (attempt {target.failures + 1})"

    def dial_failed(
        self, address: str, now: float, reason: str, rng: random.Random, *, retryable: bool = True
    ) -> None:
        """Record a failed dial or handshake and schedule the next try."""
        target = self._targets.get(address)
        if target is None:
            return
        target.failures += 1
        target.connected_since = None
        if not retryable:
            target.state = TargetState.FAILED
            target.info = f"{reason}; will not retry"
            return
        delay = self.policy.delay(target.failures, rng)
        target.state = TargetState.RETRYING
        target.next_attempt = now + delay
        target.info = f"{reason}; retry in {delay:.1f}s"

    def established(self, address: str, peer: PeerName, now: float, *, via: str = "") -> None:
        """A connection to the peer behind ``address`` is up."""
        target = self._targets.get(address)
        if target is None:
            return
        target.state = TargetState.ESTABLISHED
        target.peer = peer
        target.connected_since = now
        target.lost_at = None
        target.info = via or "connected"

    def skip_connected(self, connected: set[PeerName], now: float) -> None:
        """Targets whose peer is already connected by another connection count as up."""
        for target in self._targets.values():
            if target.state is TargetState.RETRYING and target.peer in connected:
                target.state = TargetState.ESTABLISHED
                target.connected_since = now
                target.info = "peer already connected by another connection"

    def peer_disconnected(
        self,
        peer: PeerName,
        now: float,
        reason: str,
        rng: random.Random,
        *,
        min_delay: float = 0.0,
    ) -> None:
        """The connection to ``peer`` ended: redial its targets after backoff.

        A connection that lived longer than ``policy.reset_after`` resets the
        schedule, so a healthy target that drops is retried quickly.  Targets that
        were forgotten (neither direct nor discovered any more) are removed.
        """
        for target in list(self._targets.values()):
            if target.peer != peer or target.state is not TargetState.ESTABLISHED:
                continue
            lived = now - (target.connected_since or now)
            if lived >= self.policy.reset_after:
                target.failures = 0
            target.connected_since = None
            target.lost_at = now
            target.failures += 1
            delay = max(min_delay, self.policy.delay(target.failures, rng))
            target.state = TargetState.RETRYING
            target.next_attempt = now + delay
            target.info = f"connection lost: {reason}; retry in {delay:.1f}s"

    def statuses(self, now: float) -> list[TargetStatus]:
        """Sorted status views for the API."""
        result = []
        for t in sorted(self._targets.values(), key=lambda t: t.address):
            wait = t.next_attempt - now if t.state is TargetState.RETRYING else None
            result.append(
                TargetStatus(
                    address=t.address,
                    direct=t.direct,
                    state=t.state.value,
                    info=t.info,
                    attempts=t.failures,
                    next_attempt_in=max(0.0, wait) if wait is not None else None,
                    peer=t.peer,
                )
            )
        return result

"""The peer router: one nursery owning the listener, the dialer, every connection,
the periodic gossip, and the tasks of its services and datapath.

All decisions are delegated to the sans-IO cores (Handshake, GossipCore,
Topology, TargetTable, TokenBucket, the admission rules); this class only moves
bytes and time between them, so the simulator can run many of it.  Features
(IPAM, endpoints and the datapath, DNS, metrics) are ``Service`` objects given
at construction (node/service.py); the Router names none of them.  The life
of one connection (handshake, admission, run, refusal) is walked through by
``connection_life.ConnectionLife``.

Dependencies are injected -- Transport, Storage, Datapath, randomness and the
key factory -- and time comes from trio's clock, so under
``trio.testing.MockClock`` the same router runs in simulated time.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet

import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter.config import RouterConfig
from meshrouter.dialing.admission import Duplicate, duplicate_decision, eviction_candidate
from meshrouter.dialing.discovery_policy import CandidateCache, discovered_targets
from meshrouter.dialing.targets import TargetTable
from meshrouter.errors import (
    ConnectionLimitError,
    ConnectionRefusedByPolicyError,
    NameCollisionError,
)
from meshrouter.gossip.core import GossipCore
from meshrouter.names import PeerName, format_peer_name
from meshrouter.node.connection import PeerConnection
from meshrouter.node.connection_life import ConnectionLife
from meshrouter.node.datapath import Datapath, NullDatapath
from meshrouter.node.dialer import Dialer
from meshrouter.node.direct_peers import DirectPeers
from meshrouter.node.inbound_gate import Handshaking, InboundGate
from meshrouter.node.service import Service, ServiceContext, TopologyChange
from meshrouter.node.status_rows import RouterStatus
from meshrouter.node.topology_signal import TopologySignal
from meshrouter.node.topology_upkeep import TOPOLOGY_CHANNEL, TopologyUpkeep
from meshrouter.node.transport import Transport
from meshrouter.storage import MemoryStorage, Storage
from meshrouter.topology.current_routes import CurrentRoutes
from meshrouter.topology.gossiper import TopologyGossiper
from meshrouter.topology.records import ConnectionRecord
from meshrouter.topology.topology import Topology
from meshrouter.wire.messages import Message

log = logging.getLogger(__name__)

DISCOVERY_REFRESH = 5.0
"""Seconds a discovery candidate list is kept while the known peers stay the same."""


def _default_key_factory() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


class Router:
    """A meshrouter peer: owns the mesh connections, the gossip channels and its services."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        transport: Transport,
        rng: random.Random,
        storage: Storage | None = None,
        datapath: Datapath | None = None,
        services: Sequence[Service] = (),
        key_factory: Callable[[], X25519PrivateKey] = _default_key_factory,
        observer: Callable[[Router, str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.transport = transport
        self.rng = rng
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self.datapath: Datapath = datapath if datapath is not None else NullDatapath()
        self.key_factory = key_factory
        self.observer = observer
        self._event_subscribers: list[Callable[[str, str], None]] = []
        self.uid = rng.getrandbits(64)
        self.topology = Topology(
            local_name=config.name,
            nickname=config.nickname,
            uid=self.uid,
            listen_port=config.mesh.listen_port,
            rng=rng,
        )
        self.gossip = GossipCore(config.name, rng=rng)
        self.gossip.add_channel(TOPOLOGY_CHANNEL, TopologyGossiper(self.topology, rng))
        self.gossip.on_outgoing = self._wake_sender
        self.gossip.set_routes(CurrentRoutes(self.topology))
        self.targets = TargetTable(config.timing.backoff)
        self._candidates = CandidateCache(max_age=DISCOVERY_REFRESH)
        self.direct_peers = DirectPeers(self.storage, self.targets)
        self.connections: dict[PeerName, PeerConnection] = {}
        self.transient: dict[PeerName, PeerConnection] = {}
        self.handshaking: set[Handshaking] = set()
        self.inbound = InboundGate(
            config,
            handshaking=self.handshaking,
            pending_elsewhere=lambda: [c.address for c in self.transient.values()],
            open_sockets=lambda: len(self.connections) + len(self.handshaking)
            + len(self.transient),
            on_refusal=lambda address, reason: self._emit("refused", f"in {address} {reason}"),
        )
        self.listen_address: str | None = None
        self.started_at: float | None = None
        self.connection_terminations = 0
        self.status = RouterStatus(self)
        self.topology_changes = TopologySignal()
        self.upkeep = TopologyUpkeep(
            topology=self.topology,
            gossip=self.gossip,
            config=config,
            rng=rng,
            signal=self.topology_changes,
        )
        self._nursery: trio.Nursery | None = None
        self.lifecycle = ConnectionLife(self)
        self.dialer = Dialer(
            config=config,
            targets=self.targets,
            transport=transport,
            rng=rng,
            connected=lambda: set(self.connections),
            outstanding=self._outstanding,
            on_dial_started=self.lifecycle.dial_started,
            on_dial_failed=self.lifecycle.dial_failed,
            run_stream=self.lifecycle.run_dialled,
        )
        self._stopped = trio.Event()
        # Subscription order is the order consumers see a change in.
        self.topology_changes.subscribe(self._report_removed_peers)
        self.topology_changes.subscribe(self._update_discovery)
        self.services: list[Service] = list(services)
        context = ServiceContext(
            name=config.name,
            uid=self.uid,
            nickname=config.nickname,
            label=self.label,
            gossip=self.gossip,
            storage=self.storage,
            rng=rng,
            topology=self.topology,
            datapath=self.datapath,
            reachable=self.reachable_peers,
            peer_address=self.peer_address,
            stop_router=self.stop,
            leave_mesh=self.leave,
            drain_gossip=self.drain_gossip,
            services=lambda: list(self.services),
            status=self.status,
            subscribe_events=self._event_subscribers.append,
        )
        for service in self.services:
            service.attach(context)
            self.topology_changes.subscribe(service.on_topology_changed)

    # ------------------------------------------------------------------ life cycle

    @property
    def name(self) -> PeerName:
        return self.config.name

    @property
    def label(self) -> str:
        return f"{format_peer_name(self.name)}({self.config.nickname})"

    def service(self, name: str) -> Service | None:
        """The service registered under ``name`` (e.g. ``ipam``), if any."""
        return next((s for s in self.services if s.name == name), None)

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, dial, gossip until cancelled or stop() is called.

        task_status.started() reports the bound listen address, so callers (CLI,
        tests, simulator) can start the router with ``await nursery.start(...)``.
        """
        self.direct_peers.load(self.config.mesh.initial_peers)
        for service in self.services:
            service.load()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.started_at = trio.current_time()
            self.listen_address = await nursery.start(
                self.transport.serve, self.lifecycle.handle_inbound, nursery
            )
            # After the listener: a router that cannot bind its port never touches
            # the switch (or the host's underlay device).
            await nursery.start(self.datapath.run)
            port = int(self.listen_address.rsplit(":", 1)[1])
            if port != self.topology.local_record.listen_port:
                self.topology.set_listen_port(port)
            self.upkeep.start(nursery)
            nursery.start_soon(self.dialer.run, nursery)
            nursery.start_soon(self._gossip_loop)
            for service in self.services:
                await nursery.start(service.run)
            log.info("router %s listening on %s", self.label, self.listen_address)
            task_status.started(self.listen_address)
            await self._stopped.wait()
            nursery.cancel_scope.cancel()
        log.info("router %s stopped", self.label)

    def stop(self) -> None:
        """Shut the router down cleanly (its run() returns)."""
        self._stopped.set()

    async def drain_gossip(self, limit: float) -> None:
        """Wait (at most ``limit`` seconds) until every queued gossip message has
        been handed to its connection, e.g. a hand-over before a reset stops us."""
        with trio.move_on_after(limit):
            while any(self.gossip.has_outgoing(peer) for peer in self.connections):  # noqa: ASYNC110 - polled: the gossip core has no event for "all sent"
                await trio.sleep(0.01)
            await trio.sleep(0.05)  # let the connections' writers flush

    def leave(self) -> None:
        """``reset``: forget our direct peers (persisted) and stop, so that a
        restart joins only the peers it is then given."""
        self.direct_peers.clear()
        self.stop()

    def reachable_peers(self) -> AbstractSet[PeerName]:
        """Peers we have a route to, ourselves included: the routes' own set,
        shared by every router with the same view (not a copy per call: IPAM
        asks after every topology change and keeps it, N entries per router)."""
        return self.topology.routes().reachable()

    def peer_address(self, peer: PeerName) -> str | None:
        """The host a neighbour's control connection comes from (its underlay address)."""
        conn = self.connections.get(peer)
        return conn.address.rsplit(":", 1)[0].strip("[]") if conn is not None else None

    @property
    def cluster_id(self) -> str:
        """The cluster we belong to: the first a service knows, else the configured one."""
        for service in self.services:
            found = service.cluster_id()
            if found:
                return found
        return self.config.mesh.cluster_id

    # ------------------------------------------------------------------ user verbs

    def connect(self, peers: list[str], *, replace: bool = False) -> list[str]:
        """Add direct peers (``HOST[:PORT]``); return their normalised addresses."""
        added = self.direct_peers.connect(peers, replace=replace)
        self.dialer.wake()
        return added

    def forget(self, peers: list[str]) -> list[str]:
        """Stop redialling these direct peers; return the ones that were unknown."""
        return self.direct_peers.forget(peers)

    # ------------------------------------------------------------------ dialling

    def _outstanding(self) -> int:
        return len(self.connections) + len(self.handshaking)

    # ------------------------------------------------------------------ admission

    def _register(self, conn: PeerConnection) -> None:
        """Admit an established connection: tie-break duplicates, enforce the limit."""
        existing = self.connections.get(conn.peer)
        if existing is not None:
            decision = duplicate_decision(
                existing_remote_uid=existing.remote.uid,
                existing_closing=existing.close_reason is not None,
                existing_conn_uid=existing.conn_uid,
                new_remote_uid=conn.remote.uid,
                new_conn_uid=conn.conn_uid,
                existing_alive=trio.current_time() - existing.last_heard
                < self.config.timing.heartbeat_interval,
            )
            if decision is Duplicate.REPLACE_STALE:
                # The peer restarted (the old connection is half-open) or the old
                # one is already closing: the new connection simply replaces it.
                existing.close("replaced by a new connection from a restarted peer")
                self._unregister(existing, existing.close_reason or "replaced")
            elif decision is Duplicate.COLLISION:
                raise NameCollisionError(
                    f"{format_peer_name(conn.peer)} is connected and alive with UID "
                    f"{existing.remote.uid:#x}; a connection claiming its name with UID "
                    f"{conn.remote.uid:#x} is refused (two routers share one peer name, or "
                    "an impostor); retried with backoff"
                )
            elif decision is Duplicate.KEEP_EXISTING:
                raise ConnectionRefusedByPolicyError(
                    f"duplicate connection to {format_peer_name(conn.peer)}: keeping the other one"
                )
            elif decision is Duplicate.DROP_BOTH:
                existing.close("duplicate connection with an identical ID; both dropped")
                raise ConnectionRefusedByPolicyError(
                    "duplicate connection with an identical ID; both dropped"
                )
            else:
                existing.close("superseded by a duplicate connection that wins the tie-break")
                self._unregister(existing, existing.close_reason or "superseded")
        elif len(self.connections) >= self.config.mesh.conn_limit:
            victim = eviction_candidate(
                conn.peer,
                reachable=self.topology.routes().reachable(),
                neighbours=self.connections,
                degree=self._degree,
            )
            if victim is None:
                raise ConnectionLimitError(
                    f"connection limit of {self.config.mesh.conn_limit} reached"
                )
            dropped = self.connections[victim]
            dropped.close("dropped to make room for a peer from another part of the mesh")
            self._unregister(dropped, dropped.close_reason or "dropped")
        self.connections[conn.peer] = conn
        if conn.target is not None:
            self.targets.established(conn.target, conn.peer, trio.current_time())
        self.gossip.neighbour_up(conn.peer)
        self._local_connections_changed()

    def _degree(self, peer: PeerName) -> int:
        record = self.topology.record(peer)
        return len(record.connections) if record is not None else 0

    def _unregister(self, conn: PeerConnection, reason: str) -> None:
        if self.connections.get(conn.peer) is not conn:
            return
        del self.connections[conn.peer]
        self.connection_terminations += 1
        now = trio.current_time()
        if conn.peer not in self.transient:
            self.gossip.neighbour_down(conn.peer)
        # A peer that refused us for its limit but is reachable through the mesh
        # needs no direct link: retry slowly instead of knocking every few seconds.
        full_but_reachable = (
            conn.remote_goodbye is not None and conn.peer in self.topology.routes().reachable()
        )
        self.targets.peer_disconnected(
            conn.peer,
            now,
            reason,
            self.rng,
            min_delay=self.config.timing.gossip_interval * 2 if full_but_reachable else 0.0,
        )
        self._local_connections_changed()
        self.dialer.wake()

    # ------------------------------------------------------------------ gossip glue

    def _wake_sender(self, peer: PeerName) -> None:
        conn = self.connections.get(peer) or self.transient.get(peer)
        if conn is not None:
            conn.wake()

    def _deliver(self, conn: PeerConnection, message: Message) -> None:
        """Hand one received message to the gossip core; a bad one closes the connection."""
        before = self.topology.version
        self.gossip.handle(conn.peer, message)  # type: ignore[arg-type]
        if self.topology.version != before:
            self.upkeep.changed()

    def _connection_confirmed(self, conn: PeerConnection) -> None:
        if self.connections.get(conn.peer) is conn:
            self._local_connections_changed()

    def _local_connections_changed(self) -> None:
        records = [
            ConnectionRecord(
                peer=conn.peer, address=conn.address, outbound=conn.outbound, established=True
            )
            for conn in self.connections.values()
            if conn.confirmed
        ]
        if not records:
            # Isolated, and only refused connections (peers at their limit, which
            # still share their topology for a moment): list them as not
            # established so that the topology they sent is kept (reachable for
            # GC, no routes) and discovery can find a peer with room.
            records = [
                ConnectionRecord(
                    peer=conn.peer,
                    address=conn.address,
                    outbound=conn.outbound,
                    established=False,
                )
                for conn in self.connections.values()
                if conn.remote_goodbye is not None
            ]
        # No full garbage collection here: ``set_local_connections`` already
        # searches for the peers we stopped listing (and whatever hung on them
        # only), and everything else was reachable before.  A full search per
        # connection change cost a third of all GC time in a 100-peer join.
        self.topology.set_local_connections(records)
        self.upkeep.changed()  # our new record is broadcast by the maintenance step

    # ------------------------------------------------------------------ topology consumers

    def _report_removed_peers(self, change: TopologyChange) -> None:
        for name in change.removed:
            self._emit("peer-gone", format_peer_name(name))

    def _update_discovery(self, change: TopologyChange) -> None:
        """Discovery follows every topology change; also drops forgotten targets
        once their connection has ended."""
        now = trio.current_time()
        candidates = (
            discovered_targets(
                local=self.name,
                candidates=lambda: self._candidates.get(
                    peers=change.routes.graph.members(), ours=self.topology.local_record,
                    now=now, compute=self.topology.discovery_candidates),
                degree=self._degree,
                connections=len(self.connections),
                conn_limit=self.config.mesh.conn_limit,
                defer=self.config.timing.discovery_defer,
            )
            if self.config.mesh.discovery
            else {}
        )
        self.targets.set_discovered(candidates, now)
        self.dialer.wake()

    def _emit(self, kind: str, detail: str) -> None:
        if self.observer is not None:
            self.observer(self, kind, detail)
        for subscriber in self._event_subscribers:
            subscriber(kind, detail)

    async def _gossip_loop(self) -> None:
        while True:
            await trio.sleep(self.config.timing.gossip_interval * (0.75 + 0.5 * self.rng.random()))
            self.gossip.periodic()

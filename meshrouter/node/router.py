"""The peer router: one nursery owning the listener, the dialer, every connection
and the periodic gossip.  All decisions are delegated to the sans-IO cores
(Handshake, GossipCore, Topology, TargetTable, TokenBucket); this class only
moves bytes and time between them, so the simulator can run many of it.

Dependencies are injected -- Transport, Storage, randomness and the key factory
-- and time comes from trio's clock, so under ``trio.testing.MockClock`` the same
router runs in simulated time.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from meshrouter import __version__
from meshrouter.codec import pack, unpack
from meshrouter.config import RouterConfig, normalise_peer_address
from meshrouter.dialing.targets import TargetState, TargetTable
from meshrouter.dialing.throttle import TokenBucket
from meshrouter.errors import (
    ApiError,
    ConnectionClosedError,
    ConnectionLimitError,
    ConnectionRefusedByPolicyError,
    HandshakeTimeoutError,
    MeshError,
    ProtocolError,
    StateFileError,
)
from meshrouter.gossip.core import GossipCore
from meshrouter.ipam.address_range import AddressRange
from meshrouter.ipam.founding import parse_founding
from meshrouter.names import PeerName, format_peer_name
from meshrouter.node.connection import PeerConnection
from meshrouter.node.ipam_service import IpamService
from meshrouter.node.transport import Transport
from meshrouter.storage import MemoryStorage, Storage
from meshrouter.topology.gossiper import TopologyGossiper
from meshrouter.topology.peer_map import PeerMap
from meshrouter.topology.records import ConnectionRecord
from meshrouter.topology.topology import Topology
from meshrouter.wire.handshake import Handshake, HandshakeConfig, HandshakeResult
from meshrouter.wire.identity import Identity
from meshrouter.wire.messages import Goodbye, Message

log = logging.getLogger(__name__)

TOPOLOGY_CHANNEL = "topology"
DIRECT_PEERS_KEY = "direct-peers"
MAX_DIRECT_PEERS = 1024
REFUSALS_KEPT = 32
REFUSAL_SHOWN_FOR = 600.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """An inbound connection we refused (or that failed its handshake), and why."""

    address: str
    peer: PeerName | None
    reason: str
    at: float


@dataclass(eq=False, slots=True)
class Handshaking:
    """A connection whose handshake is under way (counts toward the limit)."""

    address: str
    outbound: bool


def _describe_dial_error(exc: BaseException) -> str:
    """The most specific text for a failed dial (trio wraps the errno in a cause)."""
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    candidates: list[BaseException | None] = [exc.__cause__, exc]
    if isinstance(exc.__cause__, BaseExceptionGroup):
        candidates[:0] = list(exc.__cause__.exceptions)
    for candidate in candidates:
        if isinstance(candidate, OSError) and candidate.strerror:
            return candidate.strerror
    return str(exc) or type(exc).__name__


def _default_key_factory() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


class _CurrentRoutes:
    """The gossip core's view of routes, always for the topology as it is now.

    A broadcast is forwarded right after its delta was applied, so every peer
    forwards on the same (new) tree as the origin computed: a change that alters
    the tree itself -- a link going down -- still reaches the whole mesh.  Routes
    are cached per record set and shared between routers, so this is cheap.
    """

    def __init__(self, topology: Topology) -> None:
        self._topology = topology

    def next_hop_any(self, dst: PeerName) -> PeerName | None:
        return self._topology.routes().next_hop_any(dst)

    def broadcast_next_hops(self, origin: PeerName) -> list[PeerName]:
        return self._topology.routes().broadcast_next_hops(origin)


class Router:
    """A meshrouter peer: owns the mesh connections and the gossip channels."""

    def __init__(
        self,
        config: RouterConfig,
        *,
        transport: Transport,
        rng: random.Random,
        storage: Storage | None = None,
        key_factory: Callable[[], X25519PrivateKey] = _default_key_factory,
        observer: Callable[[Router, str, str], None] | None = None,
    ) -> None:
        self.config = config
        self.transport = transport
        self.rng = rng
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self.key_factory = key_factory
        self.uid = rng.getrandbits(64)
        self.topology = Topology(
            local_name=config.name,
            nickname=config.nickname,
            uid=self.uid,
            listen_port=config.listen_port,
            rng=rng,
        )
        self.gossip = GossipCore(config.name)
        self.gossip.add_channel(TOPOLOGY_CHANNEL, TopologyGossiper(self.topology, rng))
        self.gossip.on_outgoing = self._wake_sender
        self.gossip.set_routes(_CurrentRoutes(self.topology))
        self.targets = TargetTable(config.backoff)
        self.throttle = TokenBucket(config.accept_burst, config.accept_refill_interval)
        self.connections: dict[PeerName, PeerConnection] = {}
        self.transient: dict[PeerName, PeerConnection] = {}
        self.handshaking: set[Handshaking] = set()
        self.refusals: deque[Refusal] = deque(maxlen=REFUSALS_KEPT)
        self.listen_address: str | None = None
        self.started_at: float | None = None
        self.connection_terminations = 0
        self._nursery: trio.Nursery | None = None
        self._dial_wakeup = trio.Event()
        self._stopped = trio.Event()
        self._routes_version = -1
        self._broadcast_version = self.topology.local_record.version
        self._next_broadcast_at = -math.inf
        self._broadcast_timer_pending = False
        self._repair_pending = False
        self._maintenance_due = trio.Event()
        self.observer = observer
        self.ipam: IpamService | None = None
        if config.ipam:
            self.ipam = IpamService(
                name=config.name,
                uid=self.uid,
                address_range=AddressRange.parse(config.ipalloc_range),
                mode=parse_founding(config.ipalloc_init, len(config.initial_peers)),
                reclaim_after=config.ipalloc_reclaim_after,
                tick=config.ipam_tick,
                gossip=self.gossip,
                storage=self.storage,
                rng=rng,
                reachable=self.reachable_peers,
                label=self.label,
            )

    # ------------------------------------------------------------------ life cycle

    @property
    def name(self) -> PeerName:
        return self.config.name

    @property
    def label(self) -> str:
        return f"{format_peer_name(self.name)}({self.config.nickname})"

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, dial, gossip until cancelled or stop() is called.

        task_status.started() reports the bound listen address, so callers (CLI,
        tests, simulator) can start the router with ``await nursery.start(...)``.
        """
        self._load_direct_peers()
        if self.ipam is not None:
            self.ipam.load()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.started_at = trio.current_time()
            self.listen_address = await nursery.start(
                self.transport.serve, self._handle_inbound, nursery
            )
            port = int(self.listen_address.rsplit(":", 1)[1])
            if port != self.topology.local_record.listen_port:
                self.topology.set_listen_port(port)
            self._refresh_routes()
            nursery.start_soon(self._maintenance_loop)
            nursery.start_soon(self._dial_loop)
            nursery.start_soon(self._gossip_loop)
            if self.ipam is not None:
                await nursery.start(self.ipam.run)
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
        self.storage.save(DIRECT_PEERS_KEY, pack([]))
        self.stop()

    def reachable_peers(self) -> set[PeerName]:
        """Peers we have a route to, ourselves included."""
        return set(self.topology.routes().reachable()) | {self.name}

    @property
    def cluster_id(self) -> str:
        """The cluster we belong to: the IPAM ring's, else the configured one."""
        if self.ipam is not None and self.ipam.cluster_id:
            return self.ipam.cluster_id
        return self.config.cluster_id

    # ------------------------------------------------------------------ user verbs

    def connect(self, peers: list[str], *, replace: bool = False) -> list[str]:
        """Add direct peers (``HOST[:PORT]``); return their normalised addresses.

        The new list is persisted first, so a failing disk leaves both the file
        and the running state as they were.
        """
        addresses = [normalise_peer_address(p) for p in peers]
        current = [] if replace else self.targets.direct_addresses()
        wanted = sorted(set(current) | set(addresses))
        if len(wanted) > MAX_DIRECT_PEERS:
            raise ApiError(f"at most {MAX_DIRECT_PEERS} direct peers are allowed", 400)
        self.storage.save(DIRECT_PEERS_KEY, pack(wanted))
        self.targets.add_direct(addresses, trio.current_time(), replace=replace)
        self._dial_wakeup.set()
        return addresses

    def forget(self, peers: list[str]) -> list[str]:
        """Stop redialling these direct peers; return the ones that were unknown."""
        addresses = [normalise_peer_address(p) for p in peers]
        wanted = sorted(set(self.targets.direct_addresses()) - set(addresses))
        self.storage.save(DIRECT_PEERS_KEY, pack(wanted))
        return self.targets.forget(addresses)

    def _load_direct_peers(self) -> None:
        stored = self.storage.load(DIRECT_PEERS_KEY)
        peers: list[str] = list(self.config.initial_peers)
        if stored is not None:
            try:
                value = unpack(stored)
            except MeshError as exc:
                raise StateFileError(f"direct peers file is corrupt: {exc}") from None
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise StateFileError("direct peers file is corrupt: expected a list of addresses")
            peers += value
        now = trio.current_time()
        self.targets.add_direct([normalise_peer_address(p) for p in peers], now)
        self._save_direct_peers()

    def _save_direct_peers(self) -> None:
        self.storage.save(DIRECT_PEERS_KEY, pack(self.targets.direct_addresses()))

    # ------------------------------------------------------------------ dialling

    def _outstanding(self) -> int:
        return len(self.connections) + len(self.handshaking)

    async def _dial_loop(self) -> None:
        while True:
            self._dial_wakeup = trio.Event()
            now = trio.current_time()
            self.targets.skip_connected(set(self.connections), now)
            at_limit = False
            hard_limit = False
            # Discovered targets leave a reserve of slots for newcomers and for
            # the user's direct peers, so a mesh under a limit stays joinable.
            discovery_room = self.config.conn_limit - max(1, self.config.conn_limit // 8)
            for address in self.targets.due(now):
                outstanding = self._outstanding()
                if outstanding >= self.config.conn_limit:
                    hard_limit = True  # wait until a connection ends (it sets the event)
                    break
                target = self.targets.get(address)
                if target is not None and not target.direct and outstanding >= discovery_room:
                    at_limit = True
                    continue
                self.targets.dial_started(address)
                assert self._nursery is not None
                self._nursery.start_soon(self._dial, address)
            if hard_limit:
                wake_at = None  # a connection ending sets the event
            elif at_limit:
                wake_at = self.targets.next_wakeup(direct_only=True)
            else:
                wake_at = self.targets.next_wakeup()
            with trio.move_on_at(wake_at if wake_at is not None else math.inf):
                await self._dial_wakeup.wait()

    async def _dial(self, address: str) -> None:
        pending = Handshaking(address, outbound=True)
        self.handshaking.add(pending)
        try:
            with trio.fail_after(self.config.dial_timeout):
                stream = await self.transport.dial(address)
        except (OSError, trio.TooSlowError) as exc:
            self.handshaking.discard(pending)
            reason = _describe_dial_error(exc)
            self._emit("dial-failed", f"{address} {reason}")
            self.targets.dial_failed(
                address, trio.current_time(), f"dial failed: {reason}", self.rng
            )
            self._dial_wakeup.set()
            return
        await self._run_stream(stream, address, outbound=True, target=address, pending=pending)

    # ------------------------------------------------------------------ accepting

    async def _handle_inbound(self, stream: trio.abc.Stream, remote_address: str) -> None:
        inbound_pending = sum(1 for p in self.handshaking if not p.outbound) + len(self.transient)
        if inbound_pending >= self.config.conn_limit:
            self.refusals.append(
                Refusal(
                    remote_address,
                    None,
                    "too many inbound handshakes in progress",
                    trio.current_time(),
                )
            )
            await trio.aclose_forcefully(stream)
            return
        try:
            while not self.throttle.try_take(trio.current_time()):  # noqa: ASYNC110
                await trio.sleep(self.throttle.wait_time(trio.current_time()))
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        pending = Handshaking(remote_address, outbound=False)
        self.handshaking.add(pending)
        await self._run_stream(stream, remote_address, outbound=False, target=None, pending=pending)

    # ------------------------------------------------------------------ one connection

    def _local_identity(self) -> Identity:
        short_id = self.topology.local_record.short_id
        return Identity(
            name=self.name,
            nickname=self.config.nickname,
            uid=self.uid,
            conn_id=self.rng.getrandbits(64),
            short_id=short_id if short_id is not None else 0,
            cluster_id=self.cluster_id,
        )

    async def _handshake(self, stream: trio.abc.Stream, local: Identity) -> HandshakeResult:
        handshake = Handshake(
            HandshakeConfig(
                identity=local,
                password=self.config.password,
                private_key=self.key_factory() if self.config.password is not None else None,
                max_frame=self.config.max_frame,
            )
        )
        with trio.move_on_after(self.config.handshake_timeout) as timer:
            await stream.send_all(handshake.start())
            while not handshake.done:
                data = await stream.receive_some(65536)
                if not data:
                    raise ConnectionClosedError(
                        "connection closed by the peer during the handshake"
                    )
                try:
                    reply = handshake.receive_data(bytes(data))
                except ProtocolError:
                    await self._finish_refused_handshake(stream, handshake.unsent)
                    raise
                if reply:
                    await stream.send_all(reply)
        if timer.cancelled_caught:
            raise HandshakeTimeoutError(
                f"handshake not completed within {self.config.handshake_timeout:g}s"
            )
        return handshake.result

    async def _finish_refused_handshake(self, stream: trio.abc.Stream, unsent: bytes) -> None:
        """Let the remote see our identity frame, so it can tell its user why, too.

        Both ends run the same checks; our frame may still be unsent when we
        refuse theirs.  Send it, half-close, and drain briefly: closing with
        unread data would reset the connection and lose the frame in flight.
        """
        # Shielded (with its own short deadline) so that the handshake timer
        # cannot turn the real refusal into a "handshake timeout".
        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
            try:
                if unsent:
                    await stream.send_all(unsent)
                if isinstance(stream, trio.abc.HalfCloseableStream):
                    await stream.send_eof()
                    while await stream.receive_some(65536):
                        pass
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _run_stream(
        self,
        stream: trio.abc.Stream,
        address: str,
        *,
        outbound: bool,
        target: str | None,
        pending: Handshaking,
    ) -> None:
        """Handshake, register, run, unregister -- the whole life of one connection."""
        conn: PeerConnection | None = None
        try:
            try:
                local = self._local_identity()
                result = await self._handshake(stream, local)
                conn = self._make_connection(stream, local, result, outbound, address, target)
                self.handshaking.discard(pending)
                self._register(conn)
            except ConnectionLimitError as exc:
                assert conn is not None
                if conn.peer in self.topology.routes().reachable():
                    # Already part of our mesh: it needs no topology from us.
                    await self._say_goodbye_now(conn, f"{exc}; reachable through the mesh")
                else:
                    await self._share_topology_then_close(conn, str(exc))
                self._connection_failed(exc, address, outbound, target, conn)
                return
            except (
                ProtocolError,
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                OSError,
            ) as exc:
                self.handshaking.discard(pending)
                self._connection_failed(exc, address, outbound, target, conn)
                return
            log.info("connection %s established", conn.label)
            self._emit("up", f"{format_peer_name(conn.peer)} {'out' if outbound else 'in'}")
            reason = await conn.run()
            log.info("connection %s closed: %s", conn.label, reason)
            self._emit("down", f"{format_peer_name(conn.peer)} {reason}")
            self._unregister(conn, reason)
        finally:
            self.handshaking.discard(pending)
            if conn is not None and self.connections.get(conn.peer) is conn:
                self._unregister(conn, "router shutting down")
            self._dial_wakeup.set()  # a connection slot may have been freed
            await trio.aclose_forcefully(stream)

    async def _say_goodbye_now(self, conn: PeerConnection, reason: str) -> None:
        """Refuse an established handshake at once, telling the peer why."""
        with trio.move_on_after(1.0):
            try:
                await conn.stream.send_all(conn.session.encode(Goodbye(reason)))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass

    async def _share_topology_then_close(self, conn: PeerConnection, reason: str) -> None:
        """At the connection limit, still answer: exchange digests for a moment so
        the newcomer learns the topology (and can dial peers with room), then say
        goodbye with the reason.  Such a connection is never in our topology."""
        if conn.peer in self.connections or conn.peer in self.transient:
            return
        self.transient[conn.peer] = conn
        conn.announce_goodbye(f"{reason}; dial another peer")
        self.gossip.neighbour_up(conn.peer)
        try:
            with trio.move_on_after(self.config.limit_grace):
                await conn.run()
        finally:
            del self.transient[conn.peer]
            if conn.peer not in self.connections:  # a real link may have come up meanwhile
                self.gossip.neighbour_down(conn.peer)

    def _make_connection(
        self,
        stream: trio.abc.Stream,
        local: Identity,
        result: HandshakeResult,
        outbound: bool,
        address: str,
        target: str | None,
    ) -> PeerConnection:
        conn = PeerConnection(
            stream=stream,
            session=result.session,
            local=local,
            remote=result.remote,
            protocol_version=result.version,
            outbound=outbound,
            address=address,
            target=target,
            started_at=trio.current_time(),
            heartbeat_interval=self.config.heartbeat_interval,
            heartbeat_timeout=self.config.heartbeat_timeout,
            deliver=self._deliver,
            next_outgoing=self.gossip.pop_outgoing,
        )
        conn.on_confirmed = self._connection_confirmed
        if result.leftover:
            conn.early_messages = result.session.receive_data(result.leftover)
        return conn

    def _connection_failed(
        self,
        exc: BaseException,
        address: str,
        outbound: bool,
        target: str | None,
        conn: PeerConnection | None,
    ) -> None:
        reason = str(exc) or type(exc).__name__
        retryable = getattr(exc, "retryable", True)
        peer = conn.peer if conn is not None else None
        now = trio.current_time()
        if outbound and target is not None:
            if peer is not None and peer in self.connections:
                self.targets.established(
                    target, peer, now, via="peer already connected by another connection"
                )
            else:
                self.targets.dial_failed(target, now, reason, self.rng, retryable=retryable)
                self._dial_wakeup.set()
        else:
            self.refusals.append(Refusal(address, peer, reason, now))
        self._emit("refused", f"{'out' if outbound else 'in'} {address} {reason}")
        log.warning(
            "connection %s %s %s refused: %s",
            "to" if outbound else "from",
            address,
            f"({format_peer_name(peer)})" if peer is not None else "",
            reason,
        )

    def _register(self, conn: PeerConnection) -> None:
        """Admit an established connection: tie-break duplicates, enforce the limit."""
        existing = self.connections.get(conn.peer)
        if existing is not None and (
            existing.remote.uid != conn.remote.uid or existing.close_reason is not None
        ):
            # The peer restarted (the old connection is half-open) or the old one
            # is already closing: the new connection simply replaces it.
            existing.close("replaced by a new connection from a restarted peer")
            self._unregister(existing, existing.close_reason or "replaced")
            existing = None
        if existing is not None:
            if existing.conn_uid < conn.conn_uid:
                raise ConnectionRefusedByPolicyError(
                    f"duplicate connection to {format_peer_name(conn.peer)}: keeping the other one"
                )
            if existing.conn_uid == conn.conn_uid:
                existing.close("duplicate connection with an identical ID; both dropped")
                raise ConnectionRefusedByPolicyError(
                    "duplicate connection with an identical ID; both dropped"
                )
            existing.close("superseded by a duplicate connection that wins the tie-break")
            self._unregister(existing, existing.close_reason or "superseded")
        elif len(self.connections) >= self.config.conn_limit:
            victim = self._eviction_candidate(conn.peer)
            if victim is None:
                raise ConnectionLimitError(f"connection limit of {self.config.conn_limit} reached")
            # A peer from outside our part of the mesh: admitting it is what joins
            # two parts that would otherwise stay apart, so make room by dropping
            # our best-connected neighbour, which stays reachable through others.
            victim.close("dropped to make room for a peer from another part of the mesh")
            self._unregister(victim, victim.close_reason or "dropped")
        self.connections[conn.peer] = conn
        if conn.target is not None:
            self.targets.established(conn.target, conn.peer, trio.current_time())
        self.gossip.neighbour_up(conn.peer)
        self._local_connections_changed()

    def _eviction_candidate(self, newcomer: PeerName) -> PeerConnection | None:
        """At the limit: the connection to drop for ``newcomer``, or None to refuse.

        Only a newcomer we cannot reach (another component of the mesh, or a
        brand-new peer) justifies an eviction; the victim is the neighbour with
        the most links (ties: highest name), if it has links besides ours.
        """
        if newcomer in self.topology.routes().reachable():
            return None
        best: tuple[int, PeerName] | None = None
        for peer in self.connections:
            record = self.topology.record(peer)
            degree = len(record.connections) if record is not None else 0
            if degree > 1 and (best is None or (degree, peer) > best):
                best = (degree, peer)
        return self.connections[best[1]] if best is not None else None

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
            min_delay=self.config.gossip_interval * 2 if full_but_reachable else 0.0,
        )
        self._local_connections_changed()
        self._dial_wakeup.set()

    # ------------------------------------------------------------------ gossip glue

    def _wake_sender(self, peer: PeerName) -> None:
        conn = self.connections.get(peer) or self.transient.get(peer)
        if conn is not None:
            conn.wake()

    def _deliver(self, conn: PeerConnection, message: Message) -> None:
        """Hand one received message to the gossip core; a bad one closes the connection."""
        before = self.topology.version
        self.gossip.handle(conn.peer, message, self.rng)  # type: ignore[arg-type]
        if self.topology.version != before:
            self._topology_changed()

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
        self.topology.set_local_connections(records)
        self.topology.garbage_collect()
        self._topology_changed()  # our new record is broadcast by the maintenance step

    def _topology_changed(self) -> None:
        """Note a topology change; routes and discovery follow after ``route_coalesce``.

        Forwarding keeps using the previous routes meanwhile (as Weave does), so a
        burst of updates costs one route computation, not one per message.
        """
        if self.topology.version != self._routes_version:
            self._maintenance_due.set()

    async def _maintenance_loop(self) -> None:
        while True:
            await self._maintenance_due.wait()
            await trio.sleep(self.config.route_coalesce)
            self._maintenance_due = trio.Event()
            self._refresh_routes()

    def _refresh_routes(self) -> None:
        """Recompute routes (once per topology version) and refresh discovery."""
        if self.topology.version == self._routes_version:
            return
        self._routes_version = self.topology.version
        self._schedule_repair()
        # Our own record goes out once per maintenance step, however many times
        # it changed in between (Weave batches these for 1 s): a burst of
        # connection changes costs one broadcast, not one per change.
        self._broadcast_own_record()
        for name in self.topology.take_removed():
            self._emit("peer-gone", format_peer_name(name))
        candidates: dict[str, tuple[PeerName, float, int]] = {}
        if self.config.discovery:
            if len(self.connections) < self.config.conn_limit:
                # Both ends of a missing link discover it at about the same time;
                # the higher name waits, so that usually only one of them dials
                # and no duplicate connection has to be torn down.
                # The least-connected peers are dialled first: newcomers and
                # sparse corners get links before well-connected hubs.
                for peer, address in self.topology.discovery_candidates():
                    delay = 0.0 if self.name < peer else self.config.discovery_defer
                    record = self.topology.record(peer)
                    degree = len(record.connections) if record is not None else 0
                    if degree >= self.config.conn_limit:
                        continue  # full (limits are uniform in a mesh): don't knock
                    candidates.setdefault(address, (peer, delay, degree))
        # Also drops forgotten targets once their connection has ended.
        self.targets.set_discovered(candidates, trio.current_time())
        self._dial_wakeup.set()
        if self.ipam is not None:
            self.ipam.wake()  # reachability may have changed

    def _broadcast_own_record(self) -> None:
        """Broadcast our record if it changed: at once after a quiet spell, then at
        most once per ``topology_batch`` while changes keep coming (leading and
        trailing edge), so a lone change travels immediately and a burst of
        connection changes costs one broadcast per batch, not one per change."""
        ours = self.topology.local_record
        if ours.version == self._broadcast_version:
            return
        now = trio.current_time()
        if now < self._next_broadcast_at:
            if not self._broadcast_timer_pending:
                self._broadcast_timer_pending = True
                assert self._nursery is not None
                self._nursery.start_soon(self._broadcast_later, self._next_broadcast_at)
            return
        self._broadcast_version = ours.version
        self._next_broadcast_at = now + self.config.topology_batch
        self.gossip.originate_broadcast(TOPOLOGY_CHANNEL, PeerMap({ours.name: ours}))

    def _schedule_repair(self) -> None:
        """One anti-entropy round ``repair_delay`` after a burst of topology changes.

        A broadcast forwarded while views still differ can miss a peer; without
        this, only the periodic digest (every ``gossip_interval``, 30 s) would
        repair it, and a 150-peer mesh under a connection limit took 31 s to
        agree although its last connection change was 5 s after the last join.
        One 17-byte summary digest per router per burst costs little.
        """
        if self._repair_pending or self._nursery is None:
            return
        self._repair_pending = True
        self._nursery.start_soon(self._repair_later)

    async def _repair_later(self) -> None:
        await trio.sleep(self.config.repair_delay)
        self._repair_pending = False
        self.gossip.periodic(self.rng)

    async def _broadcast_later(self, when: float) -> None:
        await trio.sleep_until(when)
        self._broadcast_timer_pending = False
        self._broadcast_own_record()

    def _emit(self, kind: str, detail: str) -> None:
        if self.observer is not None:
            self.observer(self, kind, detail)

    async def _gossip_loop(self) -> None:
        while True:
            await trio.sleep(self.config.gossip_interval * (0.75 + 0.5 * self.rng.random()))
            self.gossip.periodic(self.rng)

    # ------------------------------------------------------------------ status

    def connection_rows(self) -> list[dict[str, Any]]:
        """Every connection and attempt with its state and why (the API's view)."""
        now = trio.current_time()
        rows: list[dict[str, Any]] = []
        for conn in sorted(self.connections.values(), key=lambda c: c.peer):
            encryption = "encrypted" if conn.session.encrypted else "unencrypted"
            rows.append(
                {
                    "peer": format_peer_name(conn.peer),
                    "nickname": conn.remote.nickname,
                    "address": conn.address,
                    "state": TargetState.ESTABLISHED.value,
                    "outbound": conn.outbound,
                    "info": f"{encryption}, protocol v{conn.protocol_version}, "
                    f"up {now - conn.started_at:.0f}s",
                }
            )
        shown = {conn.target for conn in self.connections.values() if conn.target}
        for status in self.targets.statuses(now):
            if status.address in shown or status.state == TargetState.ESTABLISHED.value:
                continue
            rows.append(
                {
                    "peer": format_peer_name(status.peer) if status.peer is not None else "",
                    "nickname": "",
                    "address": status.address,
                    "state": status.state,
                    "outbound": True,
                    "info": status.info,
                }
            )
        for pending in sorted(self.handshaking, key=lambda p: p.address):
            if not pending.outbound:
                rows.append(
                    {
                        "peer": "",
                        "nickname": "",
                        "address": pending.address,
                        "state": TargetState.CONNECTING.value,
                        "outbound": False,
                        "info": "inbound handshake in progress",
                    }
                )
        for refusal in self.refusals:
            if now - refusal.at > REFUSAL_SHOWN_FOR:
                continue
            rows.append(
                {
                    "peer": format_peer_name(refusal.peer) if refusal.peer is not None else "",
                    "nickname": "",
                    "address": refusal.address,
                    "state": TargetState.FAILED.value,
                    "outbound": False,
                    "info": f"inbound connection refused {now - refusal.at:.0f}s ago: "
                    f"{refusal.reason}",
                }
            )
        return rows

    def peer_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "name": format_peer_name(record.name),
                "nickname": record.nickname,
                "uid": record.uid,
                "short_id": record.short_id,
                "version": record.version,
                "connections": [
                    {
                        "peer": format_peer_name(c.peer),
                        "address": c.address,
                        "outbound": c.outbound,
                        "established": c.established,
                    }
                    for c in record.connections
                ],
            }
            for record in self.topology.records()
        ]

    def target_rows(self) -> list[dict[str, Any]]:
        now = trio.current_time()
        return [
            {
                "address": s.address,
                "direct": s.direct,
                "state": s.state,
                "info": s.info,
                "attempts": s.attempts,
                "next_attempt_in": s.next_attempt_in,
                "peer": format_peer_name(s.peer) if s.peer is not None else "",
            }
            for s in self.targets.statuses(now)
        ]

    def report(self) -> dict[str, Any]:
        """The full JSON report (``meshrouter report``)."""
        return {
            "router": {
                "name": format_peer_name(self.name),
                "nickname": self.config.nickname,
                "uid": self.uid,
                "version": __version__,
                "protocol": "meshrouter",
                "listen": self.listen_address,
                "encryption": self.config.password is not None,
                "cluster_id": self.cluster_id,
                "conn_limit": self.config.conn_limit,
                "discovery": self.config.discovery,
                "peers": self.peer_rows(),
                "connections": self.connection_rows(),
                "targets": self.target_rows(),
                "routes": {
                    format_peer_name(dst): format_peer_name(hop)
                    for dst, hop in sorted(self.topology.routes().unicast_table().items())
                },
                "gossip": self.gossip.stats.as_dict(),
                "ipam": self.ipam.status() if self.ipam is not None else None,
            }
        }

    def status_summary(self) -> dict[str, Any]:
        """The short summary behind ``meshrouter status``."""
        established_links = sum(
            1 for record in self.topology.records() for c in record.connections if c.established
        )
        rows = self.connection_rows()
        by_state: dict[str, int] = {}
        for row in rows:
            by_state[row["state"]] = by_state.get(row["state"], 0) + 1
        return {
            "version": __version__,
            "name": format_peer_name(self.name),
            "nickname": self.config.nickname,
            "listen": self.listen_address,
            "encryption": self.config.password is not None,
            "discovery": self.config.discovery,
            "cluster_id": self.cluster_id,
            "conn_limit": self.config.conn_limit,
            "peers": len(self.topology.records()),
            "established_links": established_links,
            "connections": len(self.connections),
            "connection_states": by_state,
            "targets": len(self.targets.direct_addresses()),
            "connection_terminations": self.connection_terminations,
            "uptime": trio.current_time() - (self.started_at or trio.current_time()),
        }

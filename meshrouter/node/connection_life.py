"""The life of one mesh connection: from a dialled or accepted stream to its end.

A stream is handshaken (bounded by the handshake deadline, which for inbound
connections started at accept), made a ``PeerConnection``, admitted by the
router (duplicate tie-break, connection limit), run until it ends and
unregistered -- or, when refused at the connection limit, kept for a moment
to share the topology and then closed with the reason.  While an accepted
stream waits for the accept throttle and handshakes, our dials to its host
are held (``TargetTable.hold``): it is most likely the peer behind such a
target, and dialling back would make a duplicate.  Every failure lands
where ``status`` shows it: the dial target's row for outbound connections, the
inbound gate's refusals otherwise.

The Router owns all state (connections, targets, gossip, topology); this shell
only walks one connection through it, so the Router reads as the owner of the
mesh and this module as the story of one link.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from meshrouter.errors import ConnectionLimitError, ProtocolError
from meshrouter.names import format_peer_name
from meshrouter.node.connection import PeerConnection
from meshrouter.node.handshaking import run_handshake
from meshrouter.node.inbound_gate import Handshaking
from meshrouter.wire.handshake import Handshake, HandshakeConfig, HandshakeResult
from meshrouter.wire.identity import Identity
from meshrouter.wire.messages import Goodbye

if TYPE_CHECKING:
    from meshrouter.node.router import Router

log = logging.getLogger("meshrouter.node.router")


class ConnectionLife:
    """Runs each connection of one router, start to end (``router.lifecycle``)."""

    def __init__(self, router: Router) -> None:
        self._router = router

    def dial_started(self, address: str) -> Handshaking:
        pending = Handshaking(address, outbound=True)
        self._router.handshaking.add(pending)
        return pending

    def dial_failed(self, address: str, reason: str, pending: Handshaking) -> None:
        self._router.handshaking.discard(pending)
        self._router._emit("dial-failed", f"{address} {reason}")

    async def run_dialled(
        self, stream: trio.abc.Stream, address: str, pending: Handshaking
    ) -> None:
        await self.run_stream(stream, address, outbound=True, target=address, pending=pending)

    # ------------------------------------------------------------------ accepting

    async def handle_inbound(self, stream: trio.abc.Stream, remote_address: str) -> None:
        """Admit and run one accepted stream.  Until its handshake ends (throttle
        wait included) our dials to its host are held: it is most likely the peer
        behind such a target dialling us (dialing/targets.py says why)."""
        router = self._router
        router.targets.hold(remote_address)
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                router.targets.release(remote_address)
                router.dialer.wake()

        try:
            admitted = await router.inbound.admit(stream, remote_address)
            if admitted is not None:
                pending, deadline = admitted
                await self.run_stream(
                    stream, remote_address, outbound=False, target=None, pending=pending,
                    deadline=deadline, handshake_over=release,
                )
        finally:
            release()

    # ------------------------------------------------------------------ one connection

    def _local_identity(self) -> Identity:
        router = self._router
        short_id = router.topology.local_record.short_id
        return Identity(
            name=router.name,
            nickname=router.config.nickname,
            uid=router.uid,
            conn_id=router.rng.getrandbits(64),
            short_id=short_id if short_id is not None else 0,
            cluster_id=router.cluster_id,
        )

    async def _handshake(
        self, stream: trio.abc.Stream, local: Identity, deadline: float | None
    ) -> HandshakeResult:
        router = self._router
        password = router.config.mesh.password
        handshake = Handshake(
            HandshakeConfig(
                identity=local,
                password=password,
                private_key=router.key_factory() if password is not None else None,
                max_frame=router.config.mesh.max_frame,
            )
        )
        limit = router.config.timing.handshake_timeout
        if deadline is not None:
            limit = max(0.0, deadline - trio.current_time())
        return await run_handshake(stream, handshake, limit)

    async def run_stream(
        self,
        stream: trio.abc.Stream,
        address: str,
        *,
        outbound: bool,
        target: str | None,
        pending: Handshaking,
        deadline: float | None = None,
        handshake_over: Callable[[], None] | None = None,
    ) -> None:
        """Handshake, register, run, unregister -- the whole life of one connection.

        ``handshake_over`` is called once the connection is registered or refused."""
        router = self._router
        conn: PeerConnection | None = None
        try:
            try:
                try:
                    local = self._local_identity()
                    result = await self._handshake(stream, local, deadline)
                    conn = self._make_connection(stream, local, result, outbound, address, target)
                    router.handshaking.discard(pending)
                    router._register(conn)
                finally:
                    if handshake_over is not None:
                        handshake_over()
            except ConnectionLimitError as exc:
                assert conn is not None
                if conn.peer in router.topology.routes().reachable():
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
                router.handshaking.discard(pending)
                self._connection_failed(exc, address, outbound, target, conn)
                return
            log.info("connection %s established", conn.label)
            router._emit("up", f"{format_peer_name(conn.peer)} {'out' if outbound else 'in'}")
            reason = await conn.run()
            log.info("connection %s closed: %s", conn.label, reason)
            if not outbound and conn.failure is not None:
                # Inbound connections have no target row: keep why it failed.
                router.inbound.refuse(address, conn.peer, conn.failure, ended=True)
            router._emit("down", f"{format_peer_name(conn.peer)} {reason}")
            router._unregister(conn, reason)
        finally:
            router.handshaking.discard(pending)
            if conn is not None and router.connections.get(conn.peer) is conn:
                router._unregister(conn, "router shutting down")
            router.dialer.wake()  # a connection slot may have been freed
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
        router = self._router
        if conn.peer in router.connections or conn.peer in router.transient:
            return
        router.transient[conn.peer] = conn
        conn.announce_goodbye(f"{reason}; dial another peer")
        router.gossip.neighbour_up(conn.peer)
        try:
            with trio.move_on_after(router.config.timing.limit_grace):
                await conn.run()
        finally:
            del router.transient[conn.peer]
            if conn.peer not in router.connections:  # a real link may have come up meanwhile
                router.gossip.neighbour_down(conn.peer)

    def _make_connection(
        self,
        stream: trio.abc.Stream,
        local: Identity,
        result: HandshakeResult,
        outbound: bool,
        address: str,
        target: str | None,
    ) -> PeerConnection:
        router = self._router
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
            heartbeat_interval=router.config.timing.heartbeat_interval,
            heartbeat_timeout=router.config.timing.heartbeat_timeout,
            deliver=router._deliver,
            next_outgoing=router.gossip.pop_outgoing,
        )
        conn.on_confirmed = router._connection_confirmed
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
        router = self._router
        reason = str(exc) or type(exc).__name__
        retryable = getattr(exc, "retryable", True)
        peer = conn.peer if conn is not None else None
        now = trio.current_time()
        if outbound and target is not None:
            if peer is not None and peer in router.connections:
                router.targets.established(
                    target, peer, now, via="peer already connected by another connection"
                )
            else:
                router.targets.dial_failed(target, now, reason, router.rng, retryable=retryable)
                router.dialer.wake()
        else:
            router.inbound.refuse(address, peer, reason)
        router._emit("refused", f"{'out' if outbound else 'in'} {address} {reason}")
        log.warning(
            "connection %s %s %s refused: %s",
            "to" if outbound else "from",
            address,
            f"({format_peer_name(peer)})" if peer is not None else "",
            reason,
        )

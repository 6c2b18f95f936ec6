"""A real PeerConnection over a given stream, for the connection tests (no handshake)."""

from __future__ import annotations

from collections.abc import Callable

import trio

from meshrouter.names import PeerName
from meshrouter.node.connection import PeerConnection
from meshrouter.wire.messages import Message
from meshrouter.wire.session import Session
from tests.wire.support import identity, identity_b


def plain_connection(stream: trio.abc.Stream, *, heartbeat_interval: float,
                     heartbeat_timeout: float,
                     next_outgoing: Callable[[PeerName], Message | None] = lambda _p: None,
                     session: Session | None = None,
                     ) -> PeerConnection:
    """An established outbound connection, unencrypted unless given a session
    (e.g. one from a real handshake), that delivers nowhere."""
    return PeerConnection(
        stream=stream,
        session=session if session is not None else Session(None),
        local=identity(),
        remote=identity_b(),
        protocol_version=2,
        outbound=True,
        address="peer",
        target=None,
        started_at=0.0,
        heartbeat_interval=heartbeat_interval,
        heartbeat_timeout=heartbeat_timeout,
        deliver=lambda _conn, _message: None,
        next_outgoing=next_outgoing,
    )

"""How a Router reaches other routers: the Transport interface and its TCP version.

The Router never opens sockets itself; it is given a Transport.  Production uses
``TcpTransport``; the simulator passes an in-memory one with latency and faults.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import trio

from meshrouter.config import format_host_port, parse_host_port
from meshrouter.errors import ConfigError

log = logging.getLogger(__name__)

ConnectionHandler = Callable[[trio.abc.Stream, str], Awaitable[None]]


class Transport(Protocol):
    """Dial and listen; addresses are ``host:port`` strings."""

    async def dial(self, address: str) -> trio.abc.Stream:
        """Open a stream to ``address``; raise OSError on failure."""
        ...

    async def serve(
        self,
        handler: ConnectionHandler,
        handler_nursery: trio.Nursery,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen, report the bound ``host:port`` via task_status, and run
        ``handler(stream, remote_address)`` in ``handler_nursery`` per connection."""
        ...


def _peer_address(stream: trio.SocketStream) -> str:
    try:
        sockname = stream.socket.getpeername()
    except OSError:
        return "unknown"
    return format_host_port(str(sockname[0]), int(sockname[1]))


class TcpTransport:
    """Real TCP: ``trio.open_tcp_stream`` and ``trio.open_tcp_listeners``."""

    def __init__(self, listen_host: str, listen_port: int) -> None:
        self.listen_host = listen_host
        self.listen_port = listen_port

    async def dial(self, address: str) -> trio.abc.Stream:
        host, port = parse_host_port(address, 6783)
        return await trio.open_tcp_stream(host, port)

    async def serve(
        self,
        handler: ConnectionHandler,
        handler_nursery: trio.Nursery,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        host = None if self.listen_host in ("", "0.0.0.0", "::") else self.listen_host
        try:
            listeners = await trio.open_tcp_listeners(self.listen_port, host=host)
        except OSError as exc:
            where = format_host_port(self.listen_host or "0.0.0.0", self.listen_port)
            raise ConfigError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        bound = listeners[0].socket.getsockname()
        bound_host = self.listen_host or "0.0.0.0"
        task_status.started(format_host_port(bound_host, int(bound[1])))

        async def wrapped(stream: trio.SocketStream) -> None:
            await handler(stream, _peer_address(stream))

        await trio.serve_listeners(wrapped, listeners, handler_nursery=handler_nursery)

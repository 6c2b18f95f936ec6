"""The trio DNS server: UDP and TCP on one address, forwarding to upstreams.

A thin shell around ``Resolver``: it moves packets and time, and decides
nothing about DNS.  UDP is served from a non-blocking socket drained in batches
per wake-up (``trio.lowlevel.wait_readable``), which is what lets one Python
process answer tens of thousands of queries per second.  Forwarded queries run
as tasks (bounded in number; beyond the bound the client gets SERVFAIL at once)
that ask each upstream in order with a timeout and answer SERVFAIL when all
fail.  TCP connections are bounded in number and idle time, and each message in
size.  Nothing a client sends can stop the server: undecodable packets are
dropped and counted, clients from elsewhere than this host and the overlay are
refused and counted.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from dnslib import QTYPE

from .access import ClientFilter
from .resolver import Answer, Drop, Forward, Resolver
from .settings import Endpoint, parse_resolv_conf
from .view import NameView

log = logging.getLogger(__name__)

UDP_BATCH = 64
MAX_UDP_QUERY = 4096
MAX_FORWARDS = 256
MAX_TCP_CONNECTIONS = 128
TCP_IDLE = 10.0
RESOLV_CONF_RECHECK = 5.0


def query_type(data: bytes) -> str:
    """The type of a query's first question, read from the bytes (bounded: at
    most 255 labels), for the per-type counter; ``malformed`` when unreadable."""
    index = 12
    for _ in range(255):
        if index >= len(data):
            return "malformed"
        length = data[index]
        if length == 0:
            break
        if length & 0xC0:
            return "malformed"  # no compression in a question we are sent
        index += length + 1
    else:
        return "malformed"
    if index + 3 > len(data):
        return "malformed"
    code = int.from_bytes(data[index + 1 : index + 3], "big")
    return str(QTYPE.get(code, f"TYPE{code}"))


PORT_ZERO_TRIES = 20
QTYPE_MEMO = 4096
"""Query types remembered by the bytes after the ID (a repeated question costs
one dict lookup instead of walking its labels: as much CPU as answering it)."""
QTYPE_MEMO_MAX_QUERY = 512


class DnsStats:
    """Counters shown by ``status dns``: responses by code and every drop by reason."""

    def __init__(self) -> None:
        self.responses: Counter[str] = Counter()
        self.queries: Counter[str] = Counter()
        """Queries by type (A, AAAA, PTR, ...; ``malformed`` when unreadable)."""
        self.dropped: Counter[str] = Counter()
        self.forwarded = 0
        self.forward_failures = 0
        self.truncated = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "responses": dict(sorted(self.responses.items())),
            "queries": dict(sorted(self.queries.items())),
            "dropped": dict(sorted(self.dropped.items())),
            "forwarded": self.forwarded,
            "forward_failures": self.forward_failures,
            "truncated": self.truncated,
        }


class UpstreamSource:
    """The upstream servers: given explicitly, or re-read from a resolv.conf
    (at most every 5 s, as Weave) minus our own addresses."""

    def __init__(self, explicit: list[Endpoint], resolv_conf: str | None,
                 is_self: Callable[[Endpoint], bool]) -> None:
        self.explicit = explicit
        self.resolv_conf = resolv_conf
        self.is_self = is_self
        self._cached: list[Endpoint] = []
        self._checked_at = -1e18
        self.error = ""

    @property
    def last(self) -> list[Endpoint]:
        """The upstreams as last read (for status; never reads the file)."""
        return self.explicit or self._cached

    async def current(self) -> list[Endpoint]:
        if self.explicit or self.resolv_conf is None:
            return self.explicit
        now = trio.current_time()
        if now - self._checked_at >= RESOLV_CONF_RECHECK:
            self._checked_at = now
            try:
                text = await trio.Path(self.resolv_conf).read_text()
                self._cached = parse_resolv_conf(text, is_self=self.is_self)
                self.error = "" if self._cached else f"no usable nameserver in {self.resolv_conf}"
            except (OSError, UnicodeError) as exc:
                self.error = f"cannot read {self.resolv_conf}: {exc}"
        return self._cached


class DnsServer:
    """Serves one ``Resolver`` on UDP and TCP at one address."""

    def __init__(
        self,
        resolver: Resolver,
        view: Callable[[], NameView],
        rng: random.Random,
        *,
        listen: Endpoint,
        upstreams: Callable[[], Awaitable[list[Endpoint]]],
        timeout: float,
        client_filter: ClientFilter,
        stats: DnsStats | None = None,
    ) -> None:
        self.resolver = resolver
        self.view = view
        self.rng = rng
        self.listen = listen
        self.upstreams = upstreams
        self.timeout = timeout
        self.client_filter = client_filter
        self.stats = stats or DnsStats()
        self.bound: Endpoint | None = None
        self._forwards = 0
        self._tcp_connections = 0
        self._qtypes: dict[bytes, str] = {}

    async def run(self, *, task_status: trio.TaskStatus[Endpoint] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Bind UDP then TCP on the same port (OSError if either is taken), serve
        until cancelled; ``task_status`` gets the bound (host, port)."""
        host, wanted = self.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Port 0: the UDP port the kernel picks may be taken for TCP; try others.
        for attempt in range(1 if wanted else PORT_ZERO_TRIES):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                udp.setblocking(False)
                udp.bind((host, wanted))
                port = udp.getsockname()[1]
                listeners = await trio.open_tcp_listeners(port, host=host)
                break
            except OSError as exc:
                udp.close()
                if wanted or exc.errno != errno.EADDRINUSE or attempt == PORT_ZERO_TRIES - 1:
                    raise
            except BaseException:
                udp.close()
                raise
        try:
            self.bound = (host, port)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_udp, udp, nursery)
                nursery.start_soon(trio.serve_listeners, self._serve_tcp, listeners)
                task_status.started(self.bound)
        finally:
            udp.close()
            self.bound = None

    # ------------------------------------------------------------ UDP

    async def _serve_udp(self, sock: socket.socket, nursery: trio.Nursery) -> None:
        while True:
            await trio.lowlevel.wait_readable(sock)
            for _ in range(UDP_BATCH):
                try:
                    data, addr = sock.recvfrom(MAX_UDP_QUERY)
                except BlockingIOError:
                    break
                except OSError as exc:  # e.g. an ICMP error queued on the socket
                    self.stats.dropped[f"recv: {errno.errorcode.get(exc.errno or 0, 'error')}"] += 1
                    continue
                try:
                    reply = self._handle_udp(data, addr, sock, nursery)
                except Exception:  # a bug must cost one packet, never the router
                    self._internal_error(data)
                    continue
                if reply is not None:
                    self._send_udp(sock, reply, addr)

    def _handle_udp(self, data: bytes, addr: Any, sock: socket.socket,
                    nursery: trio.Nursery) -> bytes | None:
        if not self.client_filter.allows(addr[0]):
            self.stats.dropped["client not allowed"] += 1
            return self.resolver.error(data, "REFUSED")
        self._count_query(data)
        outcome = self.resolver.resolve(data, self.view(), self.rng, tcp=False)
        if isinstance(outcome, Answer):
            self._count(outcome)
            return outcome.data
        if isinstance(outcome, Drop):
            self.stats.dropped[outcome.reason] += 1
            return None
        if self._forwards >= MAX_FORWARDS:
            self.stats.dropped["too many forwards"] += 1
            return self._servfail(outcome.query)
        self._forwards += 1
        nursery.start_soon(self._forward_udp, sock, outcome, addr)
        return None

    async def _forward_udp(self, sock: socket.socket, forward: Forward, addr: Any) -> None:
        try:
            reply = await self._ask_upstreams(forward.query, tcp=False)
        finally:
            self._forwards -= 1
        if reply is None:
            reply = self._servfail(forward.query)
        if reply is not None:
            self._send_udp(sock, reply, addr)

    def _send_udp(self, sock: socket.socket, reply: bytes, addr: Any) -> None:
        try:
            sock.sendto(reply, addr)
        except BlockingIOError:
            self.stats.dropped["send buffer full"] += 1
        except OSError:
            self.stats.dropped["send failed"] += 1

    # ------------------------------------------------------------ TCP

    async def _serve_tcp(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                peer = stream.socket.getpeername()[0]
            except OSError:
                return
            if self._tcp_connections >= MAX_TCP_CONNECTIONS:
                self.stats.dropped["too many TCP connections"] += 1
                return
            if not self.client_filter.allows(peer):
                self.stats.dropped["client not allowed"] += 1
                return
            self._tcp_connections += 1
            try:
                await self._tcp_session(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass
            except Exception:  # a bug must cost one connection, never the router
                self._internal_error(b"")
            finally:
                self._tcp_connections -= 1

    def _internal_error(self, data: bytes) -> None:
        self.stats.dropped["internal error"] += 1
        log.exception("dns: internal error answering %r; packet dropped", data[:64])

    async def _tcp_session(self, stream: trio.SocketStream) -> None:
        while True:
            query: bytes | None = None
            with trio.move_on_after(TCP_IDLE):
                query = await _receive_message(stream)
            if query is None:
                return  # EOF or idle
            self._count_query(query)
            outcome = self.resolver.resolve(query, self.view(), self.rng, tcp=True)
            reply: bytes | None
            if isinstance(outcome, Answer):
                self._count(outcome)
                reply = outcome.data
            elif isinstance(outcome, Drop):
                self.stats.dropped[outcome.reason] += 1
                return  # a peer sending garbage over TCP gets the connection closed
            else:
                reply = await self._ask_upstreams(outcome.query, tcp=True)
                reply = reply if reply is not None else self._servfail(outcome.query)
            if reply is not None:
                await stream.send_all(len(reply).to_bytes(2, "big") + reply)

    # ------------------------------------------------------------ upstreams

    async def _ask_upstreams(self, query: bytes, *, tcp: bool) -> bytes | None:
        """The first upstream answer with the query's ID, or None if all fail."""
        self.stats.forwarded += 1
        for host, port in await self.upstreams():
            with trio.move_on_after(self.timeout):
                try:
                    reply = await (_tcp_exchange if tcp else _udp_exchange)(host, port, query)
                except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                    continue
                if reply is not None:
                    return reply
        self.stats.forward_failures += 1
        return None

    def _servfail(self, query: bytes) -> bytes | None:
        reply = self.resolver.error(query, "SERVFAIL")
        if reply is not None:
            self.stats.responses["SERVFAIL"] += 1
        return reply

    def _count_query(self, data: bytes) -> None:
        """Count the query by type (memoized, bounded: at most QTYPE_MEMO small queries)."""
        if len(data) > QTYPE_MEMO_MAX_QUERY:
            self.stats.queries[query_type(data)] += 1
            return
        key = bytes(data[2:])
        qtype = self._qtypes.get(key)
        if qtype is None:
            qtype = query_type(data)
            if len(self._qtypes) >= QTYPE_MEMO:
                self._qtypes.clear()
            self._qtypes[key] = qtype
        self.stats.queries[qtype] += 1

    def _count(self, answer: Answer) -> None:
        self.stats.responses[answer.rcode] += 1
        if answer.truncated:
            self.stats.truncated += 1


def _matches(query: bytes, reply: bytes) -> bool:
    return len(reply) >= 12 and reply[:2] == query[:2] and bool(reply[2] & 0x80)


async def _udp_exchange(host: str, port: int, query: bytes) -> bytes | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
        await sock.connect((host, port))
        await sock.send(query)
        while True:  # ignore stray datagrams; the caller's timeout bounds this
            reply = await sock.recv(65_535)
            if _matches(query, reply):
                return reply


async def _tcp_exchange(host: str, port: int, query: bytes) -> bytes | None:
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        await stream.send_all(len(query).to_bytes(2, "big") + query)
        reply = await _receive_message(stream)
        return reply if reply is not None and _matches(query, reply) else None


async def _receive_message(stream: trio.abc.ReceiveStream) -> bytes | None:
    """One length-prefixed DNS message over TCP, or None at EOF."""
    header = await _receive_exact(stream, 2)
    return None if header is None else await _receive_exact(stream, int.from_bytes(header, "big"))


async def _receive_exact(stream: trio.abc.ReceiveStream, count: int) -> bytes | None:
    """``count`` bytes (at most 65,535 by the 2-byte prefix), or None at EOF."""
    chunks = bytearray()
    while len(chunks) < count:
        chunk = await stream.receive_some(count - len(chunks))
        if not chunk:
            return None
        chunks += chunk
    return bytes(chunks)

"""A simulated network for Routers: in-memory byte streams with latency,
bandwidth, loss, partitions and crashes, all driven by trio's (mock) clock and
one seeded ``random.Random``.

The streams model TCP connections, so the router sees what it would see on a
real host:

* latency and jitter delay each chunk, but order is kept (TCP reorders nothing);
* bandwidth serialises chunks on the link;
* *loss* costs a retransmission timeout on that chunk, as TCP would;
* a partition stalls data in flight and makes new dials hang until the router's
  dial timeout -- exactly how a real partition looks, so heartbeats must notice;
* *duplication* and *reordering* faults (off by default) corrupt the byte stream,
  which the framing and encryption must detect and the router must survive;
* a crashed host's connections end with EOF at the other side (process kill).
"""

from __future__ import annotations

import errno
import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field

import trio

from meshrouter.config import parse_host_port
from meshrouter.node.transport import ConnectionHandler

RETRANSMIT_TIMEOUT = 0.2
WINDOW_BYTES = 256 * 1024


@dataclass
class LinkProfile:
    """Fault and delay parameters applied to every link."""

    latency: float = 0.001
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    bandwidth: float = math.inf  # bytes per second


@dataclass
class _Pipe:
    """One direction of a connection."""

    network: SimNetwork
    src_host: str
    dst_host: str
    queue: deque[tuple[float, bytes]] = field(default_factory=deque)
    link_free_at: float = 0.0
    last_delivery: float = 0.0
    timer_at: float = -math.inf
    """When the network's timer last was asked to wake this pipe: chunks due at
    the same moment share one wake (the reader takes them all at once)."""
    buffered: int = 0
    closed: bool = False
    waiters: list[trio.lowlevel.Task] = field(default_factory=list)

    def notify(self) -> None:
        """Wake whoever waits on this pipe (its reader, a writer held by the window)."""
        waiters = self.waiters
        if waiters:
            self.waiters = []
            for task in waiters:
                trio.lowlevel.reschedule(task)

    async def changed(self) -> None:
        """Wait for the next ``notify``.

        Parks the task directly rather than through a ``trio.Event`` per
        notification: an Event (with its parking lot) was allocated on every
        chunk sent and received, and its wait added two coroutines to every
        waiting connection's stack.  (The CPU difference at 100 peers was
        within the noise of a shared machine; the allocations are gone.)
        """
        task = trio.lowlevel.current_task()
        self.waiters.append(task)

        def abort(_raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            self.waiters.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


class SimStream(trio.abc.Stream):
    """One end of a simulated TCP connection."""

    def __init__(self, outgoing: _Pipe, incoming: _Pipe) -> None:
        self._out = outgoing
        self._in = incoming
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed locally")
        pipe = self._out
        while pipe.buffered > WINDOW_BYTES and not pipe.closed:
            await pipe.changed()
        if pipe.closed:
            raise trio.BrokenResourceError("connection reset by peer")
        await trio.lowlevel.checkpoint()
        pipe.network.deliver(pipe, bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("stream closed locally")
        pipe = self._in
        network = pipe.network
        while True:
            if not network.connected(pipe.src_host, pipe.dst_host):
                await network.faults_changed.wait()
                continue
            now = trio.current_time()
            queue = pipe.queue
            if queue and queue[0][0] <= now:
                chunk = self._take_due(queue, now, max_bytes)
                pipe.buffered -= len(chunk)
                pipe.notify()
                return chunk
            if not pipe.queue and pipe.closed:
                return b""
            # The network's timer task notifies the pipe when its head is due,
            # so no per-call timeout scope is needed here.
            await pipe.changed()

    @staticmethod
    def _take_due(queue: deque[tuple[float, bytes]], now: float, max_bytes: int | None) -> bytes:
        """Every chunk already due, joined, up to ``max_bytes``: as a TCP read
        returns all the bytes that have arrived.  One read (and one wake of the
        reader) per simulated instant rather than per chunk the sender wrote."""
        _, chunk = queue.popleft()
        limit = math.inf if max_bytes is None else max_bytes
        if len(chunk) > limit:
            queue.appendleft((now, chunk[max_bytes:]))
            return chunk[:max_bytes]
        if not queue or queue[0][0] > now or len(chunk) + len(queue[0][1]) > limit:
            return chunk
        parts = [chunk]
        size = len(chunk)
        while queue and queue[0][0] <= now and size + len(queue[0][1]) <= limit:
            part = queue.popleft()[1]
            parts.append(part)
            size += len(part)
        return b"".join(parts)

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.closed = True
            self._out.notify()
            self._in.closed = True
            self._in.queue.clear()
            self._in.notify()
        await trio.lowlevel.checkpoint()


class SimTransport:
    """The Transport of one simulated host."""

    def __init__(self, network: SimNetwork, host: str, port: int) -> None:
        self.network = network
        self.host = host
        self.port = port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def dial(self, address: str) -> trio.abc.Stream:
        return await self.network.dial(self.host, address)

    async def serve(
        self,
        handler: ConnectionHandler,
        handler_nursery: trio.Nursery,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self.network.listen(self.address, handler, handler_nursery)
        try:
            task_status.started(self.address)
            await trio.sleep_forever()
        finally:
            self.network.unlisten(self.address)


class SimNetwork:
    """All simulated hosts, their listeners, links and faults."""

    def __init__(self, rng: random.Random, profile: LinkProfile | None = None) -> None:
        self.rng = rng
        self.profile = profile or LinkProfile()
        self._listeners: dict[str, tuple[ConnectionHandler, trio.Nursery]] = {}
        self._group_of: dict[str, int] = {}
        self._ephemeral = 40000
        self.faults_changed = trio.Event()
        self._timers: list[tuple[float, int, _Pipe]] = []
        self._timer_seq = 0
        self._timers_changed = trio.Event()
        self.bytes_sent = 0
        self.chunks_sent = 0

    # -- faults
    def partition(self, groups: list[list[str]]) -> None:
        """Split hosts into groups; traffic flows only inside a group."""
        self._group_of = {host: index for index, group in enumerate(groups) for host in group}
        self._faults_changed()

    def heal(self) -> None:
        self._group_of = {}
        self._faults_changed()

    def _faults_changed(self) -> None:
        self.faults_changed.set()
        self.faults_changed = trio.Event()

    def group_of(self, host: str) -> int:
        return self._group_of.get(host, -1)

    def connected(self, a: str, b: str) -> bool:
        return self._group_of.get(a, -1) == self._group_of.get(b, -1)

    # -- listeners and dialling
    def listen(self, address: str, handler: ConnectionHandler, nursery: trio.Nursery) -> None:
        if address in self._listeners:
            raise OSError(errno.EADDRINUSE, "address already in use")
        self._listeners[address] = (handler, nursery)

    def unlisten(self, address: str) -> None:
        self._listeners.pop(address, None)

    def _one_way(self, src: str, dst: str) -> float:
        p = self.profile
        return max(0.0, p.latency + (self.rng.uniform(-p.jitter, p.jitter) if p.jitter else 0.0))

    async def dial(self, src_host: str, address: str) -> trio.abc.Stream:
        dst_host, _ = parse_host_port(address, 6783)
        if not self.connected(src_host, dst_host):
            await trio.sleep_forever()  # a SYN into a partition: the dialer's timeout fires
        await trio.sleep(2 * self._one_way(src_host, dst_host))
        listener = self._listeners.get(address)
        if listener is None:
            raise OSError(errno.ECONNREFUSED, "Connection refused")
        handler, nursery = listener
        forward = _Pipe(self, src_host, dst_host)
        backward = _Pipe(self, dst_host, src_host)
        client = SimStream(forward, backward)
        server = SimStream(backward, forward)
        self._ephemeral = self._ephemeral + 1 if self._ephemeral < 65000 else 40000
        nursery.start_soon(handler, server, f"{src_host}:{self._ephemeral}")
        return client

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Timer task: wake each pipe when the chunk at its head becomes due."""
        task_status.started()
        while True:
            now = trio.current_time()
            while self._timers and self._timers[0][0] <= now:
                _, _, pipe = heapq.heappop(self._timers)
                pipe.notify()
            self._timers_changed = trio.Event()
            wake = self._timers[0][0] if self._timers else math.inf
            with trio.move_on_at(wake):
                await self._timers_changed.wait()

    def _schedule(self, when: float, pipe: _Pipe) -> None:
        self._timer_seq += 1
        earliest = self._timers[0][0] if self._timers else math.inf
        heapq.heappush(self._timers, (when, self._timer_seq, pipe))
        if when < earliest:
            self._timers_changed.set()

    def deliver(self, pipe: _Pipe, data: bytes) -> None:
        """Queue ``data`` on ``pipe`` with latency, bandwidth, loss and corruption faults."""
        now = trio.current_time()
        p = self.profile
        self.bytes_sent += len(data)
        self.chunks_sent += 1
        start = max(now, pipe.link_free_at)
        if p.bandwidth != math.inf:
            pipe.link_free_at = start + len(data) / p.bandwidth
            start = pipe.link_free_at
        arrival = start + self._one_way(pipe.src_host, pipe.dst_host)
        if p.loss and self.rng.random() < p.loss:
            arrival += RETRANSMIT_TIMEOUT
        arrival = max(arrival, pipe.last_delivery)
        pipe.last_delivery = arrival
        chunks = [data]
        if p.duplicate and self.rng.random() < p.duplicate:
            chunks.append(data)
        for chunk in chunks:
            if p.reorder and pipe.queue and self.rng.random() < p.reorder:
                pipe.queue.insert(len(pipe.queue) - 1, (arrival, chunk))
            else:
                pipe.queue.append((arrival, chunk))
            pipe.buffered += len(chunk)
        if arrival <= now:
            pipe.notify()
        elif arrival != pipe.timer_at:
            pipe.timer_at = arrival
            self._schedule(arrival, pipe)

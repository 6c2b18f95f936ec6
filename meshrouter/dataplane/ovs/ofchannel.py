"""One persistent OpenFlow 1.4 connection to a bridge's management socket.

Why: ``ovs-ofctl`` costs a process start (~25 ms here), its own text parsing
and, for ``replace-flows``, a dump and diff of the whole table, on every
change.  ``ovs-vswitchd`` listens on ``<rundir>/<bridge>.mgmt`` for exactly the
messages ``ovs-ofctl`` sends, so the router keeps one connection there and
sends the bundles it encodes itself (``meshrouter.dataplane.openflow``).

The connection is opened lazily and re-opened on the next use after any
failure (vswitchd restarted, socket gone).  ``bundle`` sends open, the adds and a
barrier without waiting in between, reading concurrently (the switch stops
reading a connection whose replies we do not read, so a long bundle with many
errors would otherwise deadlock), then commits -- or discards, when any add
was refused: OVS checks a message when it is added to a bundle, and would
commit the others (measured; ``ovs-ofctl --bundle`` does the same barrier).
A bundle on a connection that broke before its commit was answered is
discarded by the switch; the caller may then send it again on a fresh
connection (adds and strict deletes are idempotent).  Echo requests are
answered whenever we read.  ``count_flows`` and ``dump_flows`` read our flows
back (multipart statistics restricted to our cookie) on the same connection.

Errors: no socket, a refused handshake, a timeout or a broken connection are
``OpenFlowChannelError`` (the channel is unusable: fall back to ovs-ofctl);
an ``OFPT_ERROR`` answer to our bundle is ``OpenFlowError`` (the switch refused
the change; nothing of the bundle was applied).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

import trio

from meshrouter.dataplane.openflow import flowmod, stats, wire
from meshrouter.errors import MalformedMessageError, OpenFlowChannelError, OpenFlowError

RECV_CHUNK = 256 * 1024
MAX_ERRORS_KEPT = 5
XID_OPEN = 0x6D720001
XID_COMMIT = 0x6D720002
XID_HELLO = 0x6D720003
XID_BARRIER = 0x6D720004
XID_COUNT = 0x6D720005
XID_DUMP = 0x6D720006


class OpenFlowChannel:
    """The connection to ``path`` (``<rundir>/<bridge>.mgmt``)."""

    def __init__(self, path: str, *, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self._sock: trio.socket.SocketType | None = None
        self._framer = wire.Framer()
        self._pending: deque[wire.Message] = deque()
        self.connects = 0
        self.bundles = 0

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._framer = wire.Framer()
        self._pending.clear()

    async def _connect(self) -> trio.socket.SocketType:
        if self._sock is not None:
            return self._sock
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            await sock.connect(self.path)
            self._sock = sock
            self._framer = wire.Framer()
            await self._send(wire.hello(XID_HELLO))
            reply = await self._next_message()
            if reply.type != wire.MsgType.HELLO:
                raise OpenFlowChannelError(f"{self.path}: expected hello, got type {reply.type}")
            if wire.VERSION not in wire.hello_versions(reply):
                raise OpenFlowChannelError(f"{self.path}: the bridge does not allow OpenFlow 1.4")
        except OSError as exc:
            self.close()
            sock.close()
            raise OpenFlowChannelError(
                f"cannot connect to {self.path}: {exc.strerror or exc}") from None
        except BaseException:
            self.close()
            sock.close()
            raise
        self.connects += 1
        return sock

    async def _send(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise OpenFlowChannelError("OpenFlow connection closed")
        view = memoryview(data)
        try:
            while view:
                sent = await sock.send(view)
                view = view[sent:]
        except OSError as exc:
            self.close()
            raise OpenFlowChannelError(
                f"OpenFlow connection to {self.path} broke: {exc.strerror or exc}") from None

    async def _next_message(self) -> wire.Message:
        """The next message that is not an echo request (answered here)."""
        while True:
            while self._pending:
                msg = self._pending.popleft()
                if msg.type == wire.MsgType.ECHO_REQUEST:
                    await self._send(wire.echo_reply(msg))
                    continue
                return msg
            sock = self._sock
            if sock is None:
                raise OpenFlowChannelError("OpenFlow connection closed")
            try:
                data = await sock.recv(RECV_CHUNK)
            except OSError as exc:
                self.close()
                raise OpenFlowChannelError(
                    f"OpenFlow connection to {self.path} broke: {exc.strerror or exc}") from None
            if not data:
                self.close()
                raise OpenFlowChannelError(f"{self.path} closed the OpenFlow connection")
            try:
                self._pending.extend(self._framer.feed(data))
            except MalformedMessageError as exc:
                self.close()
                raise OpenFlowChannelError(f"{self.path}: {exc}") from None

    async def bundle(self, messages: list[bytes]) -> None:
        """Apply ``messages`` (complete flow_mods already wrapped by ``wire.bundle_add``)
        atomically; returns once the switch confirmed the commit."""
        self._check_path()
        try:
            with trio.fail_after(self.timeout):
                await self._connect()
                await self._exchange(messages)
        except trio.TooSlowError:
            self.close()  # the bundle's fate is unknown: a fresh connection discards it
            raise OpenFlowChannelError(
                f"OpenFlow bundle to {self.path}: no answer within {self.timeout:g} s") from None
        self.bundles += 1

    def _check_path(self) -> None:
        """A clear error, without a connect attempt, when the socket is not there."""
        if not os.path.exists(self.path):
            self.close()
            raise OpenFlowChannelError(f"{self.path} does not exist (is ovs-vswitchd running?)")

    async def _exchange(self, messages: list[bytes]) -> None:
        payload = b"".join([
            wire.bundle_control(XID_OPEN, wire.BundleCtrl.OPEN_REQUEST),
            *messages,
            wire.barrier_request(XID_BARRIER),
        ])
        failure: OpenFlowChannelError | None = None
        errors: list[str] = []

        async def send() -> None:
            nonlocal failure
            try:
                await self._send(payload)
            except OpenFlowChannelError as exc:
                failure = failure or exc
                nursery.cancel_scope.cancel()

        # errors are raised after the nursery, so callers see them unwrapped
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            try:
                errors = await self._await(XID_BARRIER, wire.MsgType.BARRIER_REPLY)
            except OpenFlowChannelError as exc:
                failure = failure or exc
            nursery.cancel_scope.cancel()  # the sender is done once the barrier is answered
        if failure is not None:
            raise failure
        # OVS refuses a bad message when it is *added* and would still commit the
        # rest: so the adds are confirmed first, and only a clean bundle is committed
        if errors:
            await self._send(wire.bundle_control(XID_COMMIT, wire.BundleCtrl.DISCARD_REQUEST))
            await self._await(XID_COMMIT, wire.MsgType.BUNDLE_CONTROL)
            raise OpenFlowError("the switch refused the bundle (discarded): " + "; ".join(errors))
        await self._send(wire.bundle_control(XID_COMMIT, wire.BundleCtrl.COMMIT_REQUEST))
        errors = await self._await(XID_COMMIT, wire.MsgType.BUNDLE_CONTROL)
        if errors:
            raise OpenFlowError("the switch refused the bundle: " + "; ".join(errors))

    async def _await(self, xid: int, reply: wire.MsgType) -> list[str]:
        """Read until the message ``xid`` is answered with ``reply`` or an error;
        return the errors met on the way (and that one), [] when all went well."""
        errors: list[str] = []
        while True:
            msg = await self._next_message()
            if msg.type == wire.MsgType.ERROR:
                err = wire.parse_error(msg)
                if len(errors) < MAX_ERRORS_KEPT or msg.xid == xid:
                    where = {XID_OPEN: "bundle open", XID_COMMIT: "bundle commit"}.get(
                        msg.xid) or flowmod.describe(err.data)
                    errors.append(f"{err.describe()} on {where}")
                if msg.xid == xid:
                    return errors
            elif msg.xid == xid and msg.type == reply:
                return errors
            # the open reply and stray replies need nothing


    async def count_flows(self, prefix: int, cookie_mask: int) -> int:
        """How many flows in the switch have a cookie matching ``prefix`` under the mask."""
        counted: list[int] = []

        def take(msg: wire.Message) -> bool:
            counted.append(stats.aggregate_flow_count(msg))
            return True

        await self._request(stats.aggregate_request(XID_COUNT, prefix, cookie_mask), XID_COUNT,
                            take, "flow count")
        return counted[0]

    async def dump_flows(self, prefix: int, cookie_mask: int) -> stats.Flows:
        """The flows whose cookie matches ``prefix`` under the mask, as bytes."""
        reader = stats.FlowReader()

        def take(msg: wire.Message) -> bool:
            reader.feed(msg)
            return reader.done

        await self._request(stats.flow_stats_request(XID_DUMP, prefix, cookie_mask), XID_DUMP,
                            take, "flow dump")
        return reader.flows

    async def _request(self, request: bytes, xid: int, take: Callable[[wire.Message], bool],
                       what: str) -> None:
        """Send ``request`` and feed the replies with its xid to ``take`` until it is done."""
        self._check_path()
        try:
            with trio.fail_after(self.timeout):
                await self._connect()
                await self._send(request)
                while True:
                    msg = await self._next_message()
                    if msg.xid != xid:
                        continue  # a late reply of something else
                    if msg.type == wire.MsgType.ERROR:
                        raise OpenFlowError(f"{what} refused: {wire.parse_error(msg).describe()}")
                    try:
                        if take(msg):
                            return
                    except MalformedMessageError as exc:
                        self.close()
                        raise OpenFlowChannelError(f"{self.path}: {exc}") from None
        except trio.TooSlowError:
            self.close()
            raise OpenFlowChannelError(
                f"{what} from {self.path}: no answer within {self.timeout:g} s") from None


def mgmt_path(rundir: str, bridge: str) -> str:
    """Where ovs-vswitchd listens for OpenFlow management connections to ``bridge``."""
    return os.path.join(rundir, f"{bridge}.mgmt")

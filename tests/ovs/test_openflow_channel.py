"""The OpenFlow channel and FlowSync's fallback against a fake switch (no OVS, no root).

The fake switch is a trio task on a unix socket in the test's directory that
speaks just enough OpenFlow 1.4: hello, bundle open/add/commit/discard, barrier,
and an echo request of its own before it answers the barrier.  It records what
it got, so the tests judge the channel by the messages on the wire.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from meshrouter.dataplane.core.flow import Flow, Match, Output
from meshrouter.dataplane.core.pipeline import Category, cookie
from meshrouter.dataplane.openflow import flowmod, wire
from meshrouter.dataplane.ovs import flowsync
from meshrouter.dataplane.ovs.ofchannel import OpenFlowChannel
from meshrouter.dataplane.ovs.tools import OvsTools
from meshrouter.errors import OpenFlowChannelError, OpenFlowError


def flow(i: int) -> Flow:
    return Flow(20, 100, Match(dl_dst=f"02:00:00:00:00:{i:02x}"), (Output(1000 + i),),
                cookie(Category.ENDPOINT, i))


@dataclass
class FakeSwitch:
    """What the fake switch does and saw."""

    versions: int = 1 << wire.VERSION | 1 << 6
    refuse_cookie: int | None = None
    close_after_adds: int | None = None
    got: list[tuple[int, int]] = field(default_factory=list)
    """(message type, bundle control type or 0) in arrival order."""
    committed: list[list[Flow]] = field(default_factory=list)
    """The added flows of each committed bundle."""
    deleted: list[flowmod.FlowMod] = field(default_factory=list)
    echo_answered: bool = False

    async def serve(self, listener: trio.SocketListener) -> None:
        while True:
            stream = await listener.accept()
            async with stream:
                await self.session(stream)

    async def session(self, stream: trio.SocketStream) -> None:
        await stream.send_all(wire.message(wire.MsgType.HELLO, 1, struct.pack(
            "!HHI", 1, 8, self.versions)))
        framer = wire.Framer()
        pending: list[Flow] = []
        adds = 0
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return
            for msg in framer.feed(data):
                ctrl = wire.parse_bundle_control(msg)[1] if msg.type == 33 else 0
                self.got.append((msg.type, ctrl))
                if msg.type == wire.MsgType.ECHO_REPLY:
                    self.echo_answered = True
                elif msg.type == wire.MsgType.BUNDLE_CONTROL:
                    reply = {0: 1, 4: 5, 6: 7}[ctrl]
                    if ctrl == wire.BundleCtrl.COMMIT_REQUEST:
                        self.committed.append(pending)
                    pending = []
                    await stream.send_all(wire.message(33, msg.xid, struct.pack(
                        "!IHH", wire.BUNDLE_ID, reply, wire.BUNDLE_FLAGS)))
                elif msg.type == wire.MsgType.BUNDLE_ADD_MESSAGE:
                    adds += 1
                    if self.close_after_adds is not None and adds > self.close_after_adds:
                        return
                    inner = wire.parse_bundle_add(msg)[2]
                    mod = flowmod.decode(wire.split(inner))
                    if mod.cookie == self.refuse_cookie:
                        await stream.send_all(wire.message(
                            wire.MsgType.ERROR, msg.xid, struct.pack("!HH", 3, 2) + inner[:64]))
                    elif mod.command == flowmod.Command.ADD:
                        pending.append(mod.flow())
                    else:
                        self.deleted.append(mod)
                elif msg.type == wire.MsgType.BARRIER_REQUEST:
                    await stream.send_all(wire.message(wire.MsgType.ECHO_REQUEST, 77, b"hi"))
                    await stream.send_all(wire.message(wire.MsgType.BARRIER_REPLY, msg.xid))


async def start(nursery: trio.Nursery, path: Path, switch: FakeSwitch) -> None:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(4)
    nursery.start_soon(switch.serve, trio.SocketListener(sock))


def bundle_of(flows: list[Flow]) -> list[bytes]:
    return [flowsync.encode_add(f) for f in flows]


def test_a_bundle_is_opened_added_confirmed_committed_and_echo_is_answered(
    tmp_path: Path
) -> None:
    switch = FakeSwitch()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await start(nursery, tmp_path / "br.mgmt", switch)
            channel = OpenFlowChannel(str(tmp_path / "br.mgmt"), timeout=5)
            await channel.bundle(bundle_of([flow(1), flow(2)]))
            await channel.bundle(bundle_of([flow(3)]))
            assert (channel.connects, channel.bundles) == (1, 2)
            channel.close()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert switch.committed == [[flow(1), flow(2)], [flow(3)]]
    assert switch.got[:6] == [(0, 0), (33, 0), (34, 0), (34, 0), (20, 0), (3, 0)]
    assert switch.got[6] == (33, wire.BundleCtrl.COMMIT_REQUEST) and switch.echo_answered


def test_a_refused_add_discards_the_bundle_and_names_the_flow(tmp_path: Path) -> None:
    switch = FakeSwitch(refuse_cookie=flow(2).cookie)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await start(nursery, tmp_path / "br.mgmt", switch)
            channel = OpenFlowChannel(str(tmp_path / "br.mgmt"), timeout=5)
            with pytest.raises(OpenFlowError, match=r"BAD_INSTRUCTION/2 .*table=20,priority=100"):
                await channel.bundle(bundle_of([flow(1), flow(2), flow(3)]))
            channel.close()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert switch.committed == []
    assert (33, wire.BundleCtrl.DISCARD_REQUEST) in switch.got


def test_no_openflow_14_or_a_broken_connection_is_a_channel_error(tmp_path: Path) -> None:
    old = FakeSwitch(versions=1 << 4)
    dying = FakeSwitch(close_after_adds=1)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await start(nursery, tmp_path / "old.mgmt", old)
            await start(nursery, tmp_path / "dying.mgmt", dying)
            channel = OpenFlowChannel(str(tmp_path / "old.mgmt"), timeout=5)
            with pytest.raises(OpenFlowChannelError, match=r"OpenFlow 1\.4"):
                await channel.bundle(bundle_of([flow(1)]))
            channel = OpenFlowChannel(str(tmp_path / "dying.mgmt"), timeout=5)
            eof = r"closed the OpenFlow connection|broke: "  # at once, not by the timeout
            with pytest.raises(OpenFlowChannelError, match=eof):
                await channel.bundle(bundle_of([flow(1), flow(2)]))
            assert not channel.connected
            missing = OpenFlowChannel(str(tmp_path / "none.mgmt"), timeout=5)
            with pytest.raises(OpenFlowChannelError, match="does not exist"):
                await missing.bundle(bundle_of([flow(1)]))
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert old.committed == [] and dying.committed == []


class RecordingTools(OvsTools):
    """OvsTools whose ovs-ofctl calls are recorded instead of run."""

    calls: list[tuple[str, ...]]

    async def ofctl(self, *args: str, stdin: bytes | None = None) -> str:
        self.calls.append(args)
        return "flow_count=3" if args[0] == "dump-aggregate" else ""


def test_flowsync_falls_back_to_ovs_ofctl_and_retries_natively_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flowsync, "NATIVE_RETRY", 0.3)
    tools = RecordingTools(db_socket=str(tmp_path / "db.sock"), rundir=str(tmp_path))
    object.__setattr__(tools, "calls", [])
    switch = FakeSwitch()

    async def main() -> None:
        sync = flowsync.FlowSync("br")
        cache = flowsync.RenderCache()
        first = cache.table([flow(1), flow(2)])
        pushed = await sync.push(tools, first, None)  # no br.mgmt yet
        assert pushed.channel == "ovs-ofctl" and "does not exist" in sync.status()[
            "fallback_reason"]
        assert [c[:2] for c in tools.calls] == [("dump-flows", "br"), ("--bundle", "replace-flows")]
        async with trio.open_nursery() as nursery:
            await start(nursery, tmp_path / "br.mgmt", switch)
            second = cache.table([flow(1), flow(3)])
            pushed = await sync.push(tools, second, first)  # within NATIVE_RETRY: ofctl
            assert pushed.channel == "ovs-ofctl" and tools.calls[-1][:2] == (
                "--bundle", "add-flows")
            await trio.sleep(flowsync.NATIVE_RETRY)
            third = cache.table([flow(4)])
            pushed = await sync.push(tools, third, second)
            assert (pushed.channel, pushed.kind, pushed.flow_mods) == ("openflow", "delta", 3)
            assert sync.status()["fallback_reason"] == "" and len(tools.calls) == 3
            sync.close()
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert switch.committed == [[flow(4)]]
    assert sorted((d.command, d.match.dl_dst) for d in switch.deleted) == [
        (flowmod.Command.DELETE_STRICT, flow(1).match.dl_dst),
        (flowmod.Command.DELETE_STRICT, flow(3).match.dl_dst)]

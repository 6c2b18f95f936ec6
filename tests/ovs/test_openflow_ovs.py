"""The native OpenFlow channel against a real ovs-vswitchd (root + OVS; skipped elsewhere).

One lab host (a namespace with its own OVS, started by ``OvsDatapath``); the
flows are pushed by ``flowsync.FlowSync`` and read back with ``ovs-ofctl
dump-flows``.  The oracle is OVS itself: the same table installed by
``ovs-ofctl --bundle add-flows`` from the flows' text must dump identically.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable, Iterator

import pytest
import trio

from meshrouter.dataplane.core.flow import (
    ArpReply,
    Flow,
    GotoTable,
    Match,
    Output,
    OutputInPort,
    SetTunnelDst,
    SetTunnelId,
)
from meshrouter.dataplane.core.pipeline import (
    COOKIE_MASK,
    COOKIE_PREFIX,
    ETH_TYPE_ARP,
    TUNNEL_PORT,
    Category,
    cookie,
)
from meshrouter.dataplane.openflow import oxm, stats
from meshrouter.dataplane.ovs import OvsDatapath, flowsync
from meshrouter.dataplane.ovs.ofchannel import OpenFlowChannel, mgmt_path
from meshrouter.dataplane.ovs.tools import OvsTools
from meshrouter.errors import UnavailableError
from meshrouter.names import PeerName
from tests.dataplane.harness import build_world, make_containers
from tests.dataplane.test_flow import SAMPLES
from tests.integration.lab import Host, Lab, lab_skip_reason

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FOREIGN = "cookie=0x1,table=7,priority=5,dl_dst=02:00:00:00:00:77 actions=drop"


@pytest.fixture
def host() -> Iterator[Host]:
    reason = lab_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    lab = Lab(subnet=93)
    try:
        yield lab.add_host()
    finally:
        lab.close()
        assert not lab.leftovers()


def endpoint(i: int) -> list[Flow]:
    mac = f"02:aa:00:00:{i >> 8 & 255:02x}:{i & 255:02x}"
    ip = f"10.93.{i >> 8 & 255}.{i & 255}"
    ck = cookie(Category.ENDPOINT, i)
    return [
        Flow(10, 200, Match(dl_type=ETH_TYPE_ARP, arp_op=1, arp_tpa=ip),
             (ArpReply(mac, ip), OutputInPort()), ck),
        Flow(20, 100, Match(dl_dst=mac),
             (SetTunnelId(1 + i % 7), SetTunnelDst(f"192.168.93.{1 + i % 3}"),
              Output(TUNNEL_PORT)), ck),
    ]


def table(n: int, skip: int = -1) -> list[Flow]:
    flows = list(SAMPLES)
    for i in range(n):
        if i != skip:
            flows += endpoint(i)
    return flows


def dump(host: Host, bridge: str) -> list[str]:
    out = host.ovs("ovs-ofctl", "-O", "OpenFlow13", "dump-flows", bridge, "--no-stats")
    return sorted(line.strip() for line in out.splitlines() if " actions=" in line)


def run(host: Host, body: Callable[[OvsDatapath, OvsTools], Awaitable[None]]) -> None:
    async def main() -> None:
        dp = OvsDatapath(host.settings(verify_interval=3600))
        async with trio.open_nursery() as nursery:
            await nursery.start(dp.run)
            assert dp.tools is not None and dp.health().ok, dp.health().reason
            await body(dp, dp.tools)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_native_bundles_install_what_ovs_ofctl_installs(host: Host) -> None:
    async def body(dp: OvsDatapath, tools: OvsTools) -> None:
        bridge = dp.settings.bridge
        cache = flowsync.RenderCache()
        sync = flowsync.FlowSync(bridge)
        host.ovs("ovs-ofctl", "-O", "OpenFlow13", "add-flow", bridge, FOREIGN)

        async def installed_by_ofctl(flows: dict[str, str]) -> list[str]:
            """The dump of the switch after ovs-ofctl alone installed FOREIGN and ``flows``."""
            host.ovs("ovs-ofctl", "-O", "OpenFlow13", "del-flows", bridge)
            host.ovs("ovs-ofctl", "-O", "OpenFlow13", "add-flow", bridge, FOREIGN)
            text = "".join(f"{line}\n" for line in flows.values())
            await tools.ofctl("--bundle", "add-flows", bridge, "-", stdin=text.encode())
            return dump(host, bridge)

        # full table, natively: other owners' flows stay
        full = cache.table(table(40))
        pushed = await sync.push(tools, full, None)
        assert (pushed.kind, pushed.channel, pushed.flow_mods) == ("full", "openflow", 86)
        native = dump(host, bridge)
        assert len(native) == 87 and any("cookie=0x1," in line for line in native)
        assert await sync.count_ours(tools) == 86  # natively, over the same connection
        assert await flowsync.FlowSync(bridge, native=False).count_ours(tools) == 86

        # the same table through ovs-ofctl's own parser and encoder dumps the same
        assert await installed_by_ofctl(full) == native

        # a delta: endpoint 3 gone, endpoint 40 new, one flow changed
        changed = table(41, skip=3)
        old = changed[-3]  # endpoint 39's forward flow
        changed[-3] = Flow(old.table, old.priority, old.match, (Output(1000),), old.cookie)
        desired = cache.table(changed)
        pushed = await sync.push(tools, desired, full)
        assert (pushed.kind, pushed.channel, pushed.flow_mods) == ("delta", "openflow", 5)
        assert dump(host, bridge) == await installed_by_ofctl(desired)
        await sync.push(tools, desired, None)  # the switch holds the delta's table again
        assert sync.status()["channel"] == "openflow"

        # a full push over a switch holding a bigger table of ours: ours replaced, foreign kept
        small = cache.table(table(2))
        await sync.push(tools, small, None)
        assert dump(host, bridge) == await installed_by_ofctl(small)
        assert sync.status()["openflow_connects"] == 1  # one connection for all bundles
        sync.close()

    run(host, body)


def test_a_refused_bundle_changes_nothing_and_falls_back(host: Host) -> None:
    async def body(dp: OvsDatapath, tools: OvsTools) -> None:
        bridge = dp.settings.bridge
        cache = flowsync.RenderCache()
        sync = flowsync.FlowSync(bridge)
        first = cache.table(table(5))
        await sync.push(tools, first, None)
        before = dump(host, bridge)

        # goto_table backwards: OVS refuses it; the whole bundle is rolled back,
        # and ovs-ofctl (refusing it too) decides that the table, not our codec, is bad
        bad = cache.table([*table(6), Flow(40, 1, Match(in_port=6), (Output(1), GotoTable(20)),
                                           cookie(Category.BASE))])
        with pytest.raises(UnavailableError, match="BAD_TABLE_ID"):
            await sync.push(tools, bad, first)
        assert dump(host, bridge) == before
        assert not sync.disabled

        # a bridge without OpenFlow 1.4: the channel fails, ovs-ofctl carries the change
        host.ovs("ovs-vsctl", f"--db=unix:{tools.db_socket}", "set", "bridge", bridge,
                 "protocols=OpenFlow10,OpenFlow13")
        fresh = flowsync.FlowSync(bridge)
        pushed = await fresh.push(tools, cache.table(table(7)), first)
        assert pushed.channel == "ovs-ofctl"
        assert "1.4" in fresh.status()["fallback_reason"] or "closed" in fresh.status()[
            "fallback_reason"]
        assert len(dump(host, bridge)) == len(SAMPLES) + 14
        host.ovs("ovs-vsctl", f"--db=unix:{tools.db_socket}", "set", "bridge", bridge,
                 "protocols=OpenFlow10,OpenFlow13,OpenFlow14,OpenFlow15")

        # vswitchd restarted under an idle connection: the next push reconnects
        pid = host.pid("ovs-vswitchd")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        with trio.fail_after(60):
            while True:
                if dp.health().ok and host.pid("ovs-vswitchd") not in (None, pid):
                    break
                await trio.sleep(0.2)
        pushed = await sync.push(tools, cache.table(table(8)), None)
        assert pushed.channel == "openflow" and sync.status()["openflow_connects"] == 2
        assert len(dump(host, bridge)) == len(SAMPLES) + 16
        sync.close()
        fresh.close()

    run(host, body)


def test_every_flow_of_a_real_table_reads_back_byte_for_byte(host: Host) -> None:
    """A host's table from the builder (every match and action kind of the pipeline):
    after one full push, OVS dumps each flow with the bytes we encode, so a second
    full push (a router restart) sends nothing; a changed flow is the only add."""
    nodes, edges = [1, 2, 3, 4], [(1, 2), (2, 3), (3, 4), (1, 3)]
    tables, _ = build_world(nodes, edges, make_containers({1: 3, 2: 2, 3: 2, 4: 1}))
    flows = tables[PeerName(1)].flows

    async def body(dp: OvsDatapath, tools: OvsTools) -> None:
        bridge = dp.settings.bridge
        cache = flowsync.RenderCache()
        sync = flowsync.FlowSync(bridge)
        desired = cache.table(flows)
        pushed = await sync.push(tools, desired, None)
        assert pushed.flow_mods == len(flows) > 40
        channel = OpenFlowChannel(mgmt_path(tools.rundir, bridge))
        dumped = await channel.dump_flows(COOKIE_PREFIX, COOKIE_MASK)
        channel.close()
        mine = dict(stats.flow_of_add(entry[3] or b"") for entry in desired.entries.values())
        assert dumped == mine  # oracle: OVS's own encoding of what it holds
        again = await sync.push(tools, desired, None)
        assert (again.kind, again.flow_mods) == ("full", 0)
        old = flows[-1]
        changed = cache.table([*flows[:-1], Flow(old.table, old.priority, old.match,
                                                 (Output(1234),), old.cookie)])
        assert (await sync.push(tools, changed, None)).flow_mods == 1
        sync.close()

    run(host, body)


def test_a_flow_dumped_with_other_bytes_is_replaced_not_lost(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were our encoding ever to differ from OVS's for some flow, a full push must
    still leave that flow installed: the stale bytes are deleted before the add."""
    flows = [SAMPLES[1], *table(2)]  # SAMPLES[1]: in_port, ip, dl_src, nw_src

    def types_first(m: Match) -> bytes:  # OpenFlow-legal, but not the order OVS writes
        plain = original(m)
        tlvs = oxm.iter_tlvs(plain)
        ordered = sorted(tlvs, key=lambda t: t[0] != oxm.ETH_TYPE)
        return b"".join(oxm.tlv(h, v) for h, v in ordered)

    original = oxm.encode_fields

    async def body(dp: OvsDatapath, tools: OvsTools) -> None:
        bridge = dp.settings.bridge
        sync = flowsync.FlowSync(bridge)
        await sync.push(tools, flowsync.RenderCache().table(flows), None)
        before = dump(host, bridge)
        monkeypatch.setattr(oxm, "encode_fields", types_first)
        odd = flowsync.RenderCache().table(flows)
        monkeypatch.setattr(oxm, "encode_fields", original)
        pushed = await sync.push(tools, odd, None)
        assert pushed.flow_mods >= 2  # the odd flow: one delete and one add
        assert dump(host, bridge) == before
        sync.close()

    run(host, body)

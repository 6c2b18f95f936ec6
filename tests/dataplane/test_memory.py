"""The memory datapath: port numbering, idempotent attach, faults and self-restore."""

from __future__ import annotations

import pytest
import trio

from meshrouter.dataplane.core.flow import Flow, Match, Output
from meshrouter.dataplane.memory import MemoryDatapath
from meshrouter.errors import ConflictError, UnavailableError
from meshrouter.node.datapath import PortRequest


def request(cid: str, mac: str) -> PortRequest:
    return PortRequest(cid, "/proc/1/ns/net", "eth0", mac, "10.0.0.2/24")


def test_ports_flows_faults() -> None:
    async def main() -> None:
        dp = MemoryDatapath()
        a = await dp.attach_port(request("a", "02:00:00:00:00:01"))
        b = await dp.attach_port(request("b", "02:00:00:00:00:02"))
        assert (a.port, b.port) == (1000, 1001)
        assert await dp.attach_port(request("a", "02:00:00:00:00:01")) == a
        with pytest.raises(ConflictError):
            await dp.attach_port(request("c", "02:00:00:00:00:02"))
        await dp.detach_port("a")
        c = await dp.attach_port(request("c", "02:00:00:00:00:03"))
        assert c.port == 1000  # the lowest free number is reused

        flows = [Flow(0, 1, Match(), (Output(1000),), 1), Flow(0, 0, Match(in_port=5), (), 1)]
        await dp.apply(flows)
        await dp.apply(flows)
        assert (dp.applies, dp.flow_mods, dp.last_delta) == (2, 2, 0)
        dp.fail("ovs-vswitchd exited")
        assert not dp.health().ok and dp.installed == {}
        with pytest.raises(UnavailableError):
            await dp.attach_port(request("d", "02:00:00:00:00:04"))
        await dp.apply(flows[:1])  # desired changes while down
        dp.recover()
        assert list(dp.installed.values()) == flows[:1]
        assert dp.status()["flows"] == 1 and dp.status()["health"] == "ok"

    trio.run(main)

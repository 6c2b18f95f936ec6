"""The OVS shell when no OVS answers: it degrades with the reason and never raises from run."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from meshrouter.dataplane.core.flow import Flow, Match
from meshrouter.dataplane.ovs import OvsDatapath, OvsSettings
from meshrouter.errors import UnavailableError
from meshrouter.node.datapath import PortRequest


def test_no_ovsdb_means_degraded_with_the_socket_named_and_apply_kept(tmp_path: Path) -> None:
    sock = str(tmp_path / "no-such-db.sock")
    dp = OvsDatapath(OvsSettings(data_dir=tmp_path, db_socket=sock, own_daemons="never",
                                 datapath_type="netdev"))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(dp.run)
            health = dp.health()
            assert not health.ok and sock in health.reason
            await dp.apply([Flow(0, 0, Match(), (), 0x6D72 << 48)])
            assert dp.status()["flows_desired"] == 1 and dp.status()["flows"] == 0
            with pytest.raises(UnavailableError, match="degraded"):
                await dp.attach_port(PortRequest("c", "1", "eth0", "02:00:00:00:00:01",
                                                 "10.0.0.1/24"))
            await trio.sleep(30)  # many probes, each retrying; none raises
            assert not dp.health().ok
            assert dp.status()["health"] == "degraded"
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

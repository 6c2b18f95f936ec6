"""A DataplaneService on a hand-built ServiceContext: memory datapath, fake IPAM, MockClock."""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing

from meshrouter.dataplane.memory import MemoryDatapath
from meshrouter.endpoints.service import DataplaneService
from meshrouter.errors import ConflictError, InvalidRequestError
from meshrouter.gossip.core import GossipCore
from meshrouter.names import PeerName
from meshrouter.node.service import ServiceBase, ServiceContext
from meshrouter.storage import MemoryStorage
from meshrouter.topology.topology import Topology

LOCAL = PeerName(0x0A0000000001)


class FakeIpam(ServiceBase):
    """Hands out 10.40.0.N/16 in order; claim refuses taken or out-of-range addresses."""

    name = "ipam"

    def __init__(self) -> None:
        self.owners: dict[str, str] = {}  # address -> container
        self.next = 2
        self.calls: list[tuple[str, str]] = []

    async def allocate(self, container: str, subnet: str | None, wait: float) -> str:
        await trio.sleep(0.01)
        while f"10.40.0.{self.next}" in self.owners:
            self.next += 1
        address = f"10.40.0.{self.next}"
        self.owners[address] = container
        self.calls.append(("allocate", container))
        return f"{address}/16"

    async def claim(self, container: str, address_text: str, wait: float) -> str:
        await trio.sleep(0.01)
        if ipaddress.IPv4Address(address_text) not in ipaddress.IPv4Network("10.40.0.0/16"):
            raise InvalidRequestError(f"{address_text} is outside the range")
        holder = self.owners.get(address_text)
        if holder not in (None, container):
            raise ConflictError(f"{address_text} is taken by {holder}")
        self.owners[address_text] = container
        self.calls.append(("claim", container))
        return f"{address_text}/16"

    def release(self, container: str, address_text: str | None) -> list[str]:
        freed = [a for a, c in self.owners.items() if c == container
                 and (address_text is None or a == address_text)]
        for a in freed:
            del self.owners[a]
        self.calls.append(("release", container))
        return freed


def make_service(*, storage: MemoryStorage | None = None, datapath: MemoryDatapath | None = None,
                 ipam: FakeIpam | None = None, with_ipam: bool = True
                 ) -> tuple[DataplaneService, MemoryDatapath, FakeIpam, MemoryStorage]:
    storage = storage if storage is not None else MemoryStorage()
    datapath = datapath if datapath is not None else MemoryDatapath()
    ipam = ipam if ipam is not None else FakeIpam()
    service = DataplaneService(ipam_wait=1.0)
    rng = random.Random(1)
    topology = Topology(local_name=LOCAL, nickname="h1", uid=1, listen_port=6783, rng=rng)
    services: list[Any] = [service, ipam] if with_ipam else [service]

    async def drain(_: float) -> None:
        return None

    context = ServiceContext(
        name=LOCAL, uid=1, nickname="h1", label="h1", gossip=GossipCore(LOCAL),
        storage=storage, rng=rng, topology=topology, datapath=datapath,
        reachable=lambda: {LOCAL}, peer_address=lambda peer: None,
        stop_router=lambda: None, leave_mesh=lambda: None, drain_gossip=drain,
        services=lambda: services,
    )
    service.attach(context)
    return service, datapath, ipam, storage


def run_with(service: DataplaneService, body: Callable[[], Awaitable[None]]) -> None:
    """Load and run ``service`` under MockClock, run ``body``, then cancel everything."""

    async def main() -> None:
        service.load()
        async with trio.open_nursery() as nursery:
            await nursery.start(service.context.datapath.run)
            await nursery.start(service.run)
            await body()
            await trio.sleep(0.1)  # let the flow task apply the last change
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))

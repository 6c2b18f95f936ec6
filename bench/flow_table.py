"""Flow-table compute and delta cost: a 10,000-flow table and one endpoint change.

Prints figures (no asserts).  A host in a 100-peer full mesh with 5 local
containers and ~4,900 remote endpoints has about 10,000 flows.  Measured:
build (the pure function), render (every ``to_ofctl`` line, what a cold
``replace-flows`` needs), encode (every flow's OpenFlow bundle add, what the
native channel sends), diff of identical tables, one endpoint added
(rebuild + diff, and the delta size), and the memory datapath's apply
(diff + classifier rebuild).  Median of several runs, CPU ms of this process.

    python bench/flow_table.py [--peers 100] [--endpoints 4900] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import trio

from meshrouter.dataplane.core.delta import diff, index
from meshrouter.dataplane.core.table import FlowInputs, PortInfo, build_flows
from meshrouter.dataplane.core.vni import assign_ids
from meshrouter.dataplane.memory import MemoryDatapath
from meshrouter.dataplane.ovs.flowsync import encode_add
from meshrouter.endpoints.model import make_endpoint
from meshrouter.names import PeerName
from meshrouter.topology.records import ConnectionRecord, PeerRecord
from meshrouter.topology.routes import compute_routes


def graph_records(nodes: list[int], edges: list[tuple[int, int]]) -> dict[PeerName, PeerRecord]:
    """Peer records where every edge is an established link listed by both ends."""
    links: dict[int, list[ConnectionRecord]] = {n: [] for n in nodes}
    for a, b in edges:
        for x, y in ((a, b), (b, a)):
            address = f"10.0.{y >> 8}.{y & 255}:6783"
            links[x].append(ConnectionRecord(peer=PeerName(y), address=address,
                                             outbound=x < y, established=True))
    return {PeerName(n): PeerRecord(name=PeerName(n), nickname=f"h{n}", uid=1, version=1,
                                    short_id=n % 4096, listen_port=6783,
                                    connections=tuple(sorted(links[n], key=lambda c: c.peer)))
            for n in nodes}

def timed(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    """Median CPU ms of this process (the VM is shared: wall time mostly measures others)."""
    samples = []
    result = None
    for _ in range(runs):
        t0 = time.process_time()
        result = fn()
        samples.append((time.process_time() - t0) * 1000)
    return statistics.median(samples), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=4900)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    nodes = list(range(1, args.peers + 1))
    records = graph_records(nodes, [(a, b) for a in nodes for b in nodes if a < b])
    local = PeerName(1)
    routes = compute_routes(records, local)
    ids = assign_ids(records)
    underlay = {PeerName(n): f"192.168.{n >> 8}.{n & 255}" for n in nodes[1:]}
    ports = [PortInfo(f"l{i}", 1000 + i, f"02:10:00:00:00:{i:02x}", f"10.1.0.{i + 2}")
             for i in range(5)]
    endpoints = [
        make_endpoint(PeerName(2 + i % (args.peers - 1)), f"r{i}",
                      f"02:20:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                      f"10.{2 + (i >> 16)}.{i >> 8 & 255}.{i & 255 or 1}", "", 1)
        for i in range(args.endpoints)
    ]

    def inputs(eps: list[Any]) -> FlowInputs:
        return FlowInputs(local, ports, eps, routes, ids, underlay)

    routes.reachable()
    routes.broadcast_next_hops(PeerName(2))
    cold_ms, _ = timed(lambda: build_flows(inputs(endpoints)), 1)
    build_ms, table = timed(lambda: build_flows(inputs(endpoints)), args.runs)
    flows = table.flows
    render_ms, _ = timed(lambda: [f.to_ofctl() for f in flows], args.runs)
    encode_ms, _ = timed(lambda: [encode_add(f) for f in flows], args.runs)
    old_index = index(flows)
    same_ms, same = timed(lambda: diff(old_index, flows), args.runs)
    extra = make_endpoint(PeerName(7), "new", "02:30:00:00:00:01", "10.99.0.1", "", 1)
    change_ms, changed = timed(lambda: build_flows(inputs([*endpoints, extra])), args.runs)
    delta_ms, delta = timed(lambda: diff(old_index, changed.flows), args.runs)

    async def apply_both() -> tuple[float, float]:
        datapath = MemoryDatapath()
        t0 = time.process_time()
        await datapath.apply(flows)
        t1 = time.process_time()
        await datapath.apply(changed.flows)
        t2 = time.process_time()
        return (t1 - t0) * 1000, (t2 - t1) * 1000

    cold, warm = trio.run(apply_both)
    print(f"peers={args.peers} remote endpoints={args.endpoints} local ports={len(ports)}")
    print(f"flows in table:                     {len(flows)}")
    print(f"build_flows, first (cold memo):     {cold_ms:8.1f} ms")
    print(f"build_flows (full table, warm):     {build_ms:8.1f} ms")
    print(f"render to_ofctl (all lines):        {render_ms:8.1f} ms")
    print(f"encode OpenFlow bundle adds (all):  {encode_ms:8.1f} ms")
    print(f"diff, identical tables:             {same_ms:8.1f} ms  (delta {len(same)})")
    print(f"one endpoint added: rebuild         {change_ms:8.1f} ms")
    print(f"one endpoint added: diff            {delta_ms:8.1f} ms  (delta {len(delta)} flows: "
          f"{len(delta.adds)} adds, {len(delta.deletes)} deletes)")
    print(f"memory datapath apply, cold / one change: {cold:.1f} / {warm:.1f} ms")


if __name__ == "__main__":
    main()

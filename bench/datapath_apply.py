"""Flow apply through the OVS shell: a 10,000-flow table and one endpoint change.

Goals (issue 9): a 10,000-flow table <= 150 ms; one endpoint change <= 25 ms.
Runs one lab host (a network namespace with its own ovsdb-server/ovs-vswitchd,
started by ``OvsDatapath``), times ``OvsDatapath.apply``/``resync`` end to end
(Python rendering + diff + ``ovs-ofctl`` process), and splits out how much of it
is Python and how much a bare ``ovs-ofctl`` start costs.  Root and OVS needed.

    python bench/datapath_apply.py [--flows 10000] [--reps 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshrouter.dataplane.core.flow import (
    ArpReply,
    Flow,
    Match,
    Output,
    OutputInPort,
    SetTunnelDst,
    SetTunnelId,
)
from meshrouter.dataplane.core.pipeline import (
    ETH_TYPE_ARP,
    TUNNEL_PORT,
    Category,
    Table,
    cookie,
)
from meshrouter.dataplane.ovs import OvsDatapath, flowsync
from tests.integration.lab import Lab, lab_skip_reason


def endpoint_flows(i: int) -> list[Flow]:
    """Two flows per remote endpoint (ARP answer + forward into the tunnel), as the builder."""
    mac = f"02:aa:{(i >> 16) & 0xFF:02x}:{(i >> 8) & 0xFF:02x}:{i & 0xFF:02x}:01"
    ip = f"10.{32 + (i >> 16)}.{(i >> 8) & 0xFF}.{i & 0xFF}"
    ck = cookie(Category.ENDPOINT, i)
    arp = Match(dl_type=ETH_TYPE_ARP, arp_op=1, arp_tpa=ip)
    return [
        Flow(Table.ARP, 200, arp, (ArpReply(mac, ip), OutputInPort()), ck),
        Flow(Table.FORWARD, 100, Match(dl_dst=mac),
             (SetTunnelId(1 + i % 100), SetTunnelDst(f"192.168.9.{1 + i % 200}"),
              Output(TUNNEL_PORT)), ck),
    ]


def table(n_flows: int, extra: int = 0) -> list[Flow]:
    flows: list[Flow] = []
    for i in range(n_flows // 2 + extra):
        flows += endpoint_flows(i)
    return flows


def median_ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f}"


def raw_tool(text: bytes, reps: int, env: dict[str, str]) -> tuple[list[float], list[float], str]:
    """The bare tool on the same switch, for the split shell vs OVS."""
    raw_replace, bare = [], []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "replace-flows", "mr-int",
                        "-"], input=text, capture_output=True, check=True, env=env)
        raw_replace.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--version"], capture_output=True,
                       check=True, env=env)
        bare.append(time.perf_counter() - t)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    return raw_replace, bare, load


async def measure(dp: OvsDatapath, n_flows: int, reps: int, env: dict[str, str]) -> None:
    base = table(n_flows)
    plus_one = base + endpoint_flows(n_flows // 2)  # the same objects plus one endpoint

    t0 = time.perf_counter()
    await dp.apply(base)
    first = time.perf_counter() - t0
    assert dp.health().ok, dp.health().reason

    full, delta_add, delta_del, fresh, render = [], [], [], [], []
    delta_cpu: list[float] = []
    for _ in range(reps):
        t = time.perf_counter()
        await dp.resync()
        full.append(time.perf_counter() - t)
        t = time.perf_counter()
        cpu = time.process_time()
        await dp.apply(plus_one)
        delta_add.append(time.perf_counter() - t)
        delta_cpu.append(time.process_time() - cpu)
        assert dp.last_apply["flow_mods"] == 2, dp.last_apply
        t = time.perf_counter()
        await dp.apply(base)
        delta_del.append(time.perf_counter() - t)
        rebuilt = table(n_flows, extra=1)  # new objects: every flow rendered again
        t = time.perf_counter()
        await dp.apply(rebuilt)
        fresh.append(time.perf_counter() - t)
        t = time.perf_counter()
        flowsync.desired_table(rebuilt)
        render.append(time.perf_counter() - t)
        await dp.apply(base)
    assert dp.health().ok, dp.health().reason

    raw_replace, bare, load = await trio.to_thread.run_sync(
        raw_tool, flowsync.full_text(flowsync.desired_table(base)).encode(), reps, env)

    rows = [
        (f"first apply of {n_flows} flows (empty switch: dump + replace-flows)", [first]),
        (f"full apply (dump + replace-flows), {n_flows} flows", full),
        ("delta: one endpoint added, same objects (2 flow_mods)", delta_add),
        ("delta: one endpoint removed, same objects (2 flow_mods)", delta_del),
        ("  delta: CPU of the router process (Python side, not ovs-ofctl)", delta_cpu),
        (f"delta: one endpoint added, all {n_flows} flows new objects", fresh),
        (f"  Python: render {n_flows} new Flow objects", render),
        (f"  bare ovs-ofctl --bundle replace-flows, {n_flows} flows", raw_replace),
        ("  bare ovs-ofctl process start (--version)", bare),
    ]
    print(f"| operation (median of {reps}; load average {load} on 2 cores) | ms |")
    print("|---|---|")
    for name, values in rows:
        print(f"| {name} | {median_ms(values)} |")
    print("\ngoals: 10,000-flow table <= 150 ms; one endpoint change <= 25 ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    reason = lab_skip_reason()
    if reason:
        sys.exit(f"cannot run: {reason}")
    lab = Lab()
    try:
        host = lab.add_host()

        async def run() -> None:
            dp = OvsDatapath(host.settings(verify_interval=3600))
            async with trio.open_nursery() as nursery:
                await nursery.start(dp.run)
                await measure(dp, args.flows, args.reps, host.env())
                nursery.cancel_scope.cancel()

        trio.run(run)
    finally:
        lab.close()


if __name__ == "__main__":
    main()

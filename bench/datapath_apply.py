"""Flow apply to OVS: where the time goes, and the ovs-ofctl channel vs the native one.

Goals (issue 9): a 10,000-flow table <= 150 ms; one endpoint change <= 25 ms.
One lab host (a network namespace with its own ovsdb-server/ovs-vswitchd,
started by ``OvsDatapath``).  Root and OVS needed.  Prints, for each table size:

1. the breakdown: Python (flow objects, text rendering, OpenFlow encoding, the
   render cache for a cold and for a one-change table), ``ovs-ofctl`` (process
   start; its CPU -- parsing, encoding, for replace-flows the dump and diff --
   from the kernel's accounting of children) and ``ovs-vswitchd`` (CPU from
   /proc: applying the bundle, dumping);
2. the same applies through ``flowsync.FlowSync`` over both channels in the same
   run: ``ovs-ofctl`` (the old path) and ``openflow`` (the native one) -- Python
   side included, exactly what ``OvsDatapath._sync`` runs -- with the CPU each
   took in the router (children excluded: ovs-ofctl's own CPU is in part 1) and
   in ovs-vswitchd (10 ms ticks: medians of small values read 0 or 10);
3. ``OvsDatapath.apply`` end to end as the datapath is wired now (its status
   names the channel it uses).

Wall times on a shared machine measure others too: compare ratios, and read
the load average printed with each table.

    python bench/datapath_apply.py [--flows 1000,10000] [--reps 9]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
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
    COOKIE_MASK,
    COOKIE_PREFIX,
    ETH_TYPE_ARP,
    TUNNEL_PORT,
    Category,
    Table,
    cookie,
)
from meshrouter.dataplane.ovs import OvsDatapath, flowsync
from meshrouter.dataplane.ovs.ofchannel import OpenFlowChannel, mgmt_path
from meshrouter.dataplane.ovs.tools import OvsTools
from tests.integration.lab import Host, Lab, lab_skip_reason

Row = tuple[str, str, str, str]


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


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}"


def p95(values: list[float]) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000:.1f}"


def load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


class Cpu:
    """CPU seconds of ovs-vswitchd (from /proc, 10 ms ticks) and of our children."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def vswitchd(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick

    @staticmethod
    def children() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


def cpu_of(fn: Callable[[], object], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.process_time()
        fn()
        out.append(time.process_time() - t)
    return out


class Bench:
    def __init__(self, host: Host, dp: OvsDatapath, tools: OvsTools, reps: int) -> None:
        self.host, self.dp, self.tools, self.reps = host, dp, tools, reps
        self.bridge = dp.settings.bridge
        pid = host.pid("ovs-vswitchd")
        assert pid is not None
        self.cpu = Cpu(pid)
        self.rows: list[Row] = []

    def row(self, name: str, wall: list[float] | None, vsd: list[float] | None = None,
            other: str = "") -> None:
        self.rows.append((name, ms(wall) if wall else "", ms(vsd) if vsd else "", other))

    def ofctl(self, *args: str, stdin: bytes = b"") -> tuple[float, float, float]:
        """(wall, ofctl CPU, vswitchd CPU) of one ovs-ofctl run."""
        c0, v0, t0 = Cpu.children(), self.cpu.vswitchd(), time.perf_counter()
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], input=stdin,
                       capture_output=True, check=True, env=self.host.env())
        t1, v1, c1 = time.perf_counter(), self.cpu.vswitchd(), Cpu.children()
        return t1 - t0, c1 - c0, v1 - v0

    async def timed(self, fn: Callable[[], Awaitable[object]]) -> tuple[float, float, float]:
        """(wall, vswitchd CPU, router CPU) of one awaited call."""
        v0, c0, t0 = self.cpu.vswitchd(), time.process_time(), time.perf_counter()
        await fn()
        t1, c1 = time.perf_counter(), time.process_time()
        return t1 - t0, self.cpu.vswitchd() - v0, c1 - c0

    def clear(self) -> None:
        self.ofctl("del-flows", self.bridge)

    def python_side(self, n: int) -> None:
        self.row(f"Python: build {n} Flow objects (CPU)", cpu_of(lambda: table(n), self.reps))
        fresh = [table(n) for _ in range(self.reps)]
        it = iter(fresh)
        self.row(f"Python: render {n} new flows as ovs-ofctl text (CPU)",
                 cpu_of(lambda: [(f.to_ofctl(), f.match_text()) for f in next(it)], self.reps))
        fresh = [table(n) for _ in range(self.reps)]
        it = iter(fresh)
        self.row(f"Python: encode {n} new flows as OpenFlow bundle adds (CPU)",
                 cpu_of(lambda: [flowsync.encode_add(f) for f in next(it)], self.reps))
        fresh = [table(n) for _ in range(self.reps)]
        it = iter(fresh)
        self.row(f"Python: render cache, {n} new flows (text + OpenFlow; CPU)",
                 cpu_of(lambda: flowsync.RenderCache().table(next(it)), self.reps))
        cache = flowsync.RenderCache()
        base = table(n)
        plus = base + endpoint_flows(n // 2)
        cache.table(base)
        flip = iter([plus, base] * self.reps)
        self.row(f"Python: render cache, one endpoint more or less of {n} (CPU)",
                 cpu_of(lambda: cache.table(next(flip)), self.reps * 2))

    def ofctl_side(self, n: int) -> None:
        text = flowsync.full_text(flowsync.desired_table(table(n))).encode()
        start = [self.ofctl("--version")[0] for _ in range(self.reps)]
        self.row("ovs-ofctl: process start (--version)", start)
        adds, dumps, same = [], [], []
        for _ in range(self.reps):
            self.clear()
            adds.append(self.ofctl("--bundle", "add-flows", self.bridge, "-", stdin=text))
            dumps.append(self.ofctl("dump-flows", self.bridge, "--no-stats"))
            same.append(self.ofctl("--bundle", "replace-flows", self.bridge, "-", stdin=text))
        for name, got in ((f"--bundle add-flows of {n} into an empty table", adds),
                          (f"dump-flows of {n}", dumps),
                          (f"--bundle replace-flows of {n}, table already identical", same)):
            self.row(f"ovs-ofctl: {name}", [g[0] for g in got], [g[2] for g in got],
                     f"ovs-ofctl CPU {ms([g[1] for g in got])}")

    async def native_side(self, n: int) -> None:
        desired = flowsync.desired_table(table(n))
        sync = flowsync.FlowSync(self.bridge)
        channel = OpenFlowChannel(mgmt_path(self.tools.rundir, self.bridge))
        blind = flowsync.native_messages(None, desired)[0]
        got: dict[str, list[tuple[float, float, float]]] = {
            "adds": [], "blind": [], "dump": [], "same": []}
        for _ in range(self.reps):
            self.clear()
            got["adds"].append(await self.timed(lambda: channel.bundle(blind[1:])))
            got["blind"].append(await self.timed(lambda: channel.bundle(blind)))
            got["dump"].append(await self.timed(
                lambda: channel.dump_flows(COOKIE_PREFIX, COOKIE_MASK)))
            got["same"].append(await self.timed(lambda: sync.push(self.tools, desired, None)))
        channel.close()
        sync.close()
        for key, name in (
            ("adds", f"bundle of {n} adds into an empty table"),
            ("blind", f"bundle of delete-ours + {n} adds over the same table"),
            ("dump", f"flow stats dump of our {n} flows (read back, parsed)"),
            ("same", "full apply over the same table: dump + diff, nothing to send"),
        ):
            rows = got[key]
            self.row(f"native: {name}", [r[0] for r in rows], [r[1] for r in rows],
                     f"router CPU {ms([r[2] for r in rows])}")

    async def channels(self, n: int) -> dict[str, dict[str, list[float]]]:
        """Each channel, Python side included: full apply (switch empty; switch holding
        the table) and one endpoint added/removed (p50/p95)."""
        results: dict[str, dict[str, list[float]]] = {}
        base = table(n)
        plus = base + endpoint_flows(n // 2)
        for native in (False, True):
            name = "openflow" if native else "ovs-ofctl"
            sync = flowsync.FlowSync(self.bridge, native=native)
            cache = flowsync.RenderCache()
            cache.table(base)  # renders once, as the datapath's cache holds them
            got: dict[str, list[float]] = {
                f"{k}{suffix}": [] for k in ("empty", "full", "add", "del")
                for suffix in ("", "_cpu", "_vsd")}

            async def apply(flows: list[Flow], installed: flowsync.DesiredTable | None,
                            sync: flowsync.FlowSync = sync,
                            cache: flowsync.RenderCache = cache) -> flowsync.DesiredTable:
                desired = cache.table(flows)
                await sync.push(self.tools, desired, installed)
                return desired

            installed: flowsync.DesiredTable | None = None

            async def step(key: str, flows: list[Flow], full: bool,
                           got: dict[str, list[float]] = got) -> None:
                nonlocal installed
                v0, c0, t0 = self.cpu.vswitchd(), time.process_time(), time.perf_counter()
                installed = await apply(flows, None if full else installed)
                got[key].append(time.perf_counter() - t0)
                got[key + "_cpu"].append(time.process_time() - c0)
                got[key + "_vsd"].append(self.cpu.vswitchd() - v0)

            for _ in range(self.reps):
                self.clear()
                await step("empty", base, True)
                await step("full", base, True)
                for _ in range(3):
                    await step("add", plus, False)
                    await step("del", base, False)
            assert sync.last_channel == name, sync.status()
            sync.close()
            results[name] = got
        return results

    async def datapath(self, n: int) -> tuple[str, list[float], list[float]]:
        base = table(n)
        plus = base + endpoint_flows(n // 2)
        await self.dp.apply(base)
        full, one = [], []
        for _ in range(self.reps):
            t = time.perf_counter()
            await self.dp.resync()
            full.append(time.perf_counter() - t)
            for flows in (plus, base):
                t = time.perf_counter()
                await self.dp.apply(flows)
                one.append(time.perf_counter() - t)
        assert self.dp.health().ok, self.dp.health().reason
        channel = self.dp.status().get("flow_channel", {"channel": "ovs-ofctl"})["channel"]
        return str(channel), full, one


async def measure(bench: Bench, n: int) -> None:
    bench.rows = []
    bench.python_side(n)
    bench.ofctl_side(n)
    await bench.native_side(n)
    print(f"\n### {n} flows: breakdown (median of {bench.reps}; load average {load()} "
          "on 2 cores)\n")
    print("| step | wall ms | ovs-vswitchd CPU ms | other |")
    print("|---|---|---|---|")
    for name, wall, vsd, other in bench.rows:
        print(f"| {name} | {wall} | {vsd} | {other} |")

    got = await bench.channels(n)
    print(f"\n### {n} flows: apply through FlowSync, Python side included (load average "
          f"{load()})\n")
    print("| apply | ovs-ofctl p50 / p95 ms | openflow p50 / p95 ms | ratio (p50) "
          "| CPU ms router / vswitchd: ovs-ofctl, openflow |")
    print("|---|---|---|---|---|")
    labels = {"empty": f"full table of {n}, switch empty (OVS restarted)",
              "full": f"full table of {n}, switch holding it (router restarted, resync)",
              "add": "one endpoint added (2 flow_mods)",
              "del": "one endpoint removed (2 flow_mods)"}
    for key, label in labels.items():
        old, new = got["ovs-ofctl"][key], got["openflow"][key]
        ratio = statistics.median(old) / max(statistics.median(new), 1e-9)
        cpu = ", ".join(f"{ms(got[c][key + '_cpu'])} / {ms(got[c][key + '_vsd'])}"
                        for c in ("ovs-ofctl", "openflow"))
        print(f"| {label} | {ms(old)} / {p95(old)} | {ms(new)} / {p95(new)} | {ratio:.1f}x "
              f"| {cpu} |")

    channel, full, one = await bench.datapath(n)
    print(f"\nOvsDatapath end to end (channel {channel}; load average {load()}): resync of "
          f"{n} flows p50 {ms(full)} / p95 {p95(full)} ms; one endpoint change "
          f"p50 {ms(one)} / p95 {p95(one)} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--flows", default="1000,10000")
    parser.add_argument("--reps", type=int, default=9)
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
                assert dp.tools is not None
                bench = Bench(host, dp, dp.tools, args.reps)
                for n in (int(x) for x in args.flows.split(",")):
                    await measure(bench, n)
                nursery.cancel_scope.cancel()

        trio.run(run)
        print("\ngoals: 10,000-flow table <= 150 ms; one endpoint change <= 25 ms")
    finally:
        lab.close()


if __name__ == "__main__":
    main()

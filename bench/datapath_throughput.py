"""iperf3 TCP container to container across hosts: meshrouter's OVS path vs baselines.

One command, one run, one machine (issue 9's benchmark):

    python bench/datapath_throughput.py [--seconds 5] [--reps 1] [--io auto,afxdp,afpacket]
        [--jumbo] [--control] [--nice0] [--no-relay] [--flows product|lab] [--counters]

Rows:

* kernel VXLAN + Linux bridge (the Flannel-style baseline, default offloads) and
  plain veth host to host over the same underlay bridge (no overlay);
* meshrouter OVS (userspace datapath, ``OvsDatapath``, the flow table the
  product builds -- ``--flows lab`` installs ovs-lab's hand-written one
  instead) for each ``--io``: ``auto`` (AF_XDP where it works, polled by a PMD
  thread on 2+ CPUs), ``afxdp`` (AF_XDP polled by vswitchd's main thread),
  ``afpacket``, ``afxdp-pmd``; a PMD is pinned to one core per host, as on
  separate machines (``pmd_cpu_mask`` 0x1 on h1 and h3, 0x2 on h2, as the lab
  did); direct
  (c1 -> c2) and relayed (c1 -> c3 through h2, the h1-h3 underlay blocked);
* ``--jumbo``: kernel VXLAN and OVS ``auto`` again over a 9,000-byte underlay
  (containers 8,950), ratios against the kernel on the same underlay;
* ``--control``: ovs-lab's own hand-made setup (03_overlay.sh: its bridges,
  ``ethtool -K eth0 tx off`` containers, its flows) with AF_XDP non-PMD ports,
  in unique namespaces -- the lab's number measured in this run, beside ours
  (its vswitchd at the product's nice -10, so only the set-ups differ);
* ``--nice0``: OVS ``auto`` with vswitchd at nice 0 instead of the product's
  -10: what the priority is worth under the machine's current load (nothing
  on a quiet machine).

Where the time goes (second table, from the kernel's and OVS's own counters for
each OVS run): per vswitchd, the share of a core it ran (``schedstat`` run
time) and the share it was runnable but *waiting for a CPU* (run delay: on
this shared 2-core machine that is the other engineers' load, and each
other's); packets per second through its datapath; its CPU microseconds per
packet (run time / packets, from ``dpif-netdev/pmd-stats-show``); datapath
passes per packet (a tunnelled packet makes two: ``tnl_pop`` recirculates);
and the machine's CPU pressure (``/proc/pressure/cpu``, share of time some
task waited for a CPU).  Userspace OVS is extremely sensitive to that: read
the ratios, next to the load average, not the absolute figures.  ``perf``
counts nothing on these VMs, so OVS's and the scheduler's counters are what
says where the time goes.  Root, OVS and iperf3 needed; everything made is
removed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshrouter.dataplane.core.table import FlowInputs, PortInfo, build_flows
from meshrouter.dataplane.ovs import OvsDatapath
from meshrouter.endpoints.model import make_endpoint
from meshrouter.names import PeerName
from meshrouter.node.datapath import PortRequest
from tests.integration.baselines import control_lab, kernel_lab
from tests.integration.flows import lab_flows
from tests.integration.lab import Container, Host, Lab, lab_skip_reason, sh

PMD_MASKS = {1: "0x1", 2: "0x2", 3: "0x1"}


@dataclass
class Run:
    gbps: float
    retr: int
    load: float
    pressure: float
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    iperf_cpu: tuple[float, float] = (0.0, 0.0)


@dataclass
class Row:
    name: str
    streams: int
    baseline: str
    runs: list[Run] = field(default_factory=list)

    def median(self) -> Run:
        ordered = sorted(self.runs, key=lambda r: r.gbps)
        return ordered[len(ordered) // 2]


# -- set-ups ---------------------------------------------------------------------------


class StaticRoutes:
    """Routes of a 3-host lab: direct, except the pairs ``relay`` sends through a middle host."""

    def __init__(self, local: int, hosts: list[Host], relay: dict[tuple[int, int], Host]) -> None:
        self.local = local
        self.hosts = hosts
        self.relay = relay

    def next_hop(self, dst: PeerName) -> PeerName | None:
        return PeerName(self.relay[(self.local, dst)].index) if (self.local, dst) in self.relay \
            else dst

    def broadcast_next_hops(self, origin: PeerName) -> list[PeerName]:
        return []

    def reachable(self) -> frozenset[PeerName]:
        return frozenset(PeerName(h.index) for h in self.hosts)


def product_flows(host: Host, hosts: list[Host], containers: list[Container],
                  ports: dict[str, int], relay: dict[tuple[int, int], Host] | None = None
                  ) -> list[Any]:
    """The table the product builds (``build_flows``) for ``host``: anti-spoofing,
    per-peer VNIs, relays with dec_ttl -- what a router installs."""
    local = PeerName(host.index)
    mine = [PortInfo(c.name, ports[c.name], c.mac, c.ip) for c in host.containers
            if c in containers]
    endpoints = [make_endpoint(PeerName(c.host.index), c.name, c.mac, c.ip, "", 1)
                 for c in containers]
    underlay = {PeerName(h.index): h.ip for h in hosts if h is not host}
    routes = StaticRoutes(host.index, hosts, relay or {})
    ids = {PeerName(h.index): h.index for h in hosts}
    return build_flows(FlowInputs(local, mine, endpoints, routes, ids, underlay)).flows


def vswitchd_threads(pid: int | None) -> dict[str, tuple[int, int, int]]:
    """Per thread kind of ``pid`` (main, pmd, handler, ...): (ns on CPU, ns runnable
    but waiting for a CPU, ns of that CPU in the kernel), from
    ``/proc/PID/task/*/schedstat`` and ``stat``."""
    out: dict[str, tuple[int, int, int]] = {}
    tick = 1e9 / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*") if pid else []:
        try:
            name = (task / "comm").read_text().strip().rstrip("0123456789")
            run, wait = (int(x) for x in (task / "schedstat").read_text().split()[:2])
            kernel = int(int((task / "stat").read_text().rsplit(")", 1)[1].split()[12]) * tick)
        except (OSError, ValueError, IndexError):
            continue
        kind = "main" if name.startswith("ovs-vswitchd") else name
        prev = out.get(kind, (0, 0, 0))
        out[kind] = (prev[0] + run, prev[1] + wait, prev[2] + kernel)
    return out


# -- measuring -------------------------------------------------------------------------


def _pressure_us() -> float:
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(first.rsplit("total=", 1)[1])
    except (OSError, IndexError, ValueError):
        return 0.0


def _pmd_packets(h: Host) -> tuple[int, int]:
    """(packets received, recirculations) over all of ``h``'s polling threads."""
    received = recirc = 0
    for line in h.ovs("ovs-appctl", "dpif-netdev/pmd-stats-show", check=False).splitlines():
        key, _, value = line.strip().partition(":")
        if key == "packets received":
            received += int(value)
        elif key == "packet recirculations":
            recirc += int(value)
    return received, recirc


def iperf(client: Container | Host, server: Container | Host, streams: int, seconds: int,
          lab: Lab, watch: list[Host]) -> Run:
    """One iperf3 run, with the scheduler's and OVS's counters of ``watch`` around it."""
    pidfile = lab.base / "iperf.pid"
    sh("ip", "netns", "exec", server.ns, "iperf3", "-s", "-1", "-D", "--pidfile", str(pidfile))
    time.sleep(0.5)
    for h in watch:
        h.ovs("ovs-appctl", "dpif-netdev/pmd-stats-clear", check=False)
    before = {h.index: vswitchd_threads(h.pid("ovs-vswitchd")) for h in watch}
    pressure = _pressure_us()
    start = time.monotonic()
    try:
        out = sh("ip", "netns", "exec", client.ns, "iperf3", "-c", server.ip, "-t", str(seconds),
                 "-P", str(streams), "-J", "--connect-timeout", "3000", check=False,
                 timeout=seconds + 30)
    finally:
        elapsed = time.monotonic() - start
        pressure = (_pressure_us() - pressure) / 1e6 / elapsed * 100
        after = {h.index: vswitchd_threads(h.pid("ovs-vswitchd")) for h in watch}
        time.sleep(0.3)
        try:
            sh("kill", pidfile.read_text().strip(), check=False)
        except OSError:
            pass
    run = Run(0.0, -1, float(Path("/proc/loadavg").read_text().split()[0]), pressure)
    for h in watch:
        packets, recirc = _pmd_packets(h)
        ran = {k: (v[0] - before[h.index].get(k, (0, 0, 0))[0]) / 1e9
               for k, v in after[h.index].items()}
        then = before[h.index]
        waited = sum(v[1] - then.get(k, (0, 0, 0))[1] for k, v in after[h.index].items()) / 1e9
        kernel = sum(v[2] - then.get(k, (0, 0, 0))[2] for k, v in after[h.index].items()) / 1e9
        busy = sum(ran.values())
        run.hosts[f"h{h.index}"] = {
            "run": 100 * busy / elapsed, "wait": 100 * waited / elapsed,
            "kernel": 100 * kernel / busy if busy else 0.0,
            "pps": packets / elapsed, "us_per_packet": 1e6 * busy / packets if packets else 0.0,
            "passes": (packets + recirc) / packets if packets else 0.0,
            "top": max(ran, key=lambda k: ran[k]) if ran else "-",
        }
    try:
        end = json.loads(out)["end"]
        run.gbps = end["sum_received"]["bits_per_second"] / 1e9
        run.retr = int(end["sum_sent"].get("retransmits", 0))
        cpu = end.get("cpu_utilization_percent", {})
        run.iperf_cpu = (float(cpu.get("host_total", 0)), float(cpu.get("remote_total", 0)))
    except (ValueError, KeyError):
        pass
    return run


def measure(rows: dict[str, Row], name: str, baseline: str, client: Container | Host,
            server: Container | Host, args: argparse.Namespace, lab: Lab,
            watch: list[Host]) -> None:
    for streams in (1, 4):
        row = rows.setdefault(f"{name} P{streams}", Row(name, streams, f"{baseline} P{streams}"))
        for _ in range(args.reps):
            row.runs.append(iperf(client, server, streams, args.seconds, lab, watch))
        r = row.median()
        print(f"  {name} P{streams}: {r.gbps:.2f} Gbit/s (load {r.load:.2f}, CPU pressure "
              f"{r.pressure:.0f} %)", flush=True)
        if args.counters and streams == 1:
            for h in watch:
                print(f"  h{h.index} pmd-stats-show: " + " | ".join(
                    line.strip() for line in h.ovs("ovs-appctl", "dpif-netdev/pmd-stats-show",
                                                   check=False).splitlines() if line.strip()))


def _ping_ok(a: Container, b: Container) -> None:
    for _ in range(20):
        if a.ping(b):
            return
    raise RuntimeError(f"{a.name} cannot reach {b.name}")


def ovs_runs(port_io: str, mtu: int, rows: dict[str, Row], args: argparse.Namespace,
             nice: int | None = -10) -> str:
    """Direct (and relayed) OVS paths with ports on ``port_io``; returns the I/O in use."""
    lab = Lab(subnet=78)
    used = "?"
    jumbo = f" MTU {mtu}" if mtu != 1500 else ""
    label = f"OVS {port_io}{jumbo}" + (", vswitchd at nice 0" if nice is None else "")
    baseline = f"kernel VXLAN + bridge{jumbo}"
    try:
        hosts = [lab.add_host(mtu=mtu) for _ in range(3)]
        containers = [lab.add_container(h) for h in hosts]
        c1, c2, c3 = containers

        def flows(h: Host, ports: dict[str, int],
                  relay: dict[tuple[int, int], Host] | None = None) -> list[Any]:
            if args.flows == "lab":
                return lab_flows(h, containers, ports, relay)
            return product_flows(h, hosts, containers, ports, relay)

        async def main() -> None:
            nonlocal used
            # a PMD (afxdp-pmd, or auto on 2+ CPUs) gets its own core per host, as
            # on separate machines; the mask is ignored where the main thread polls
            dps = [OvsDatapath(h.settings(port_io=port_io, verify_interval=30,
                                          probe_interval=1.0, pmd_cpu_mask=PMD_MASKS[h.index],
                                          vswitchd_nice=nice))
                   for h in hosts]
            async with trio.open_nursery() as nursery:
                for dp in dps:
                    await nursery.start(dp.run)
                ports = {}
                for dp, c in zip(dps, containers, strict=True):
                    request = PortRequest(c.name, c.ns, "eth0", c.mac, f"{c.ip}/16")
                    ports[c.name] = (await dp.attach_port(request)).port
                for dp, h in zip(dps, hosts, strict=True):
                    await dp.apply(flows(h, ports))
                io = dps[0].status()["port_io"]
                used = (f"underlay {io['underlay']}, containers {', '.join(io['containers'])}"
                        f", polled by {io['threads']}")
                print(f"  {label}: {used}; container MTU {dps[0].status()['container_mtu']}",
                      flush=True)
                await trio.to_thread.run_sync(_ping_ok, c1, c2)
                await trio.to_thread.run_sync(
                    measure, rows, f"{label} direct", baseline, c1, c2, args, lab, hosts[:2])
                if args.no_relay or mtu != 1500 or nice is None:
                    nursery.cancel_scope.cancel()
                    return
                lab.block(hosts[0], hosts[2])
                relay = {(1, 3): hosts[1], (3, 1): hosts[1]}
                for dp, h in zip(dps, hosts, strict=True):
                    await dp.apply(flows(h, ports, relay))
                await trio.to_thread.run_sync(_ping_ok, c1, c3)
                await trio.to_thread.run_sync(
                    measure, rows, f"{label} relay h1>h2>h3", baseline, c1, c3, args, lab,
                    hosts)
                nursery.cancel_scope.cancel()

        trio.run(main)
    finally:
        lab.close()
    return used


def kernel_runs(mtu: int, rows: dict[str, Row], args: argparse.Namespace) -> None:
    """Kernel VXLAN + Linux bridge (as ovs-lab 05_kernel_baseline.sh), and plain veth."""
    lab = Lab(subnet=79)
    jumbo = f" MTU {mtu}" if mtu != 1500 else ""
    try:
        hosts, containers = kernel_lab(lab, mtu)
        _ping_ok(containers[0], containers[1])
        name = f"kernel VXLAN + bridge{jumbo}"
        measure(rows, name, name, containers[0], containers[1], args, lab, [])
        if mtu == 1500:
            measure(rows, "plain veth (no overlay)", name, hosts[0], hosts[1], args, lab, [])
    finally:
        lab.close()


def control_runs(rows: dict[str, Row], args: argparse.Namespace) -> None:
    """ovs-lab's hand-made setup (AF_XDP non-PMD on every port), direct only."""
    lab = Lab(subnet=80)
    try:
        hosts, (c1, c2) = control_lab(lab)
        _ping_ok(c1, c2)
        measure(rows, "control: ovs-lab 03_overlay.sh, afxdp", "kernel VXLAN + bridge",
                c1, c2, args, lab, hosts)
    finally:
        lab.close()


def report(rows: dict[str, Row], args: argparse.Namespace, used: dict[str, str]) -> None:
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"\nload average {load} at the end, 2 cores; {args.seconds} s x {args.reps} per row "
          f"(median); flows: {args.flows}; " + "; ".join(f"{k} = {v}" for k, v in used.items()))
    print("\n| path | streams | Gbit/s | x kernel VXLAN (same MTU) | x plain veth | retransmits "
          "| load avg | CPU pressure % |")
    print("|---|---|---|---|---|---|---|---|")
    plain = {s: rows[f"plain veth (no overlay) P{s}"].median().gbps for s in (1, 4)}
    for row in rows.values():
        r = row.median()
        base = rows[row.baseline].median().gbps if row.baseline in rows else 0.0
        ratio = f"{r.gbps / base:.2f}" if base else "-"
        print(f"| {row.name} | {row.streams} | {r.gbps:.2f} | {ratio} | "
              f"{r.gbps / plain[row.streams]:.2f} | {r.retr} | {r.load:.2f} | "
              f"{r.pressure:.0f} |")
    print("\nWhere the time goes (OVS rows; per vswitchd: % of a core on CPU / % runnable but "
          "waiting for a CPU; datapath packets/s; vswitchd CPU us per packet (the share of it "
          "spent in the kernel: socket I/O, and the veth, bridge and receiving TCP work that "
          "runs in its system calls); datapath passes per packet; its busiest thread) and "
          "iperf3's own CPU % (sender / receiver):\n")
    print("| path | streams | " + " | ".join(f"h{i}: on CPU / waiting %, kpps, us/pkt, passes"
                                              for i in (1, 2, 3)) + " | iperf3 CPU snd / rcv |")
    print("|---|---|---|---|---|---|")
    for row in rows.values():
        r = row.median()
        if not r.hosts:
            continue
        cells = []
        for i in (1, 2, 3):
            h = r.hosts.get(f"h{i}")
            cells.append("-" if h is None else
                         f"{h['run']:.0f} / {h['wait']:.0f}, {h['pps'] / 1000:.0f}, "
                         f"{h['us_per_packet']:.1f} ({h['kernel']:.0f} % kernel), "
                         f"{h['passes']:.2f} ({h['top']})")
        print(f"| {row.name} | {row.streams} | " + " | ".join(cells) +
              f" | {r.iperf_cpu[0]:.0f} / {r.iperf_cpu[1]:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--io", default="auto,afxdp,afpacket",
                        help="comma-separated port I/O of the OVS rows")
    parser.add_argument("--jumbo", action="store_true",
                        help="also kernel VXLAN and OVS auto over a 9,000-byte underlay")
    parser.add_argument("--control", action="store_true",
                        help="also ovs-lab's hand-made setup (03_overlay.sh, AF_XDP)")
    parser.add_argument("--nice0", action="store_true",
                        help="also OVS auto with vswitchd at nice 0 (the product starts it "
                        "at -10): what the priority buys under the machine's load")
    parser.add_argument("--no-relay", action="store_true", help="skip the relayed rows")
    parser.add_argument("--flows", choices=["product", "lab"], default="product")
    parser.add_argument("--counters", action="store_true",
                        help="print each OVS P1 run's pmd-stats-show")
    args = parser.parse_args()
    reason = lab_skip_reason()
    if reason:
        sys.exit(f"cannot run: {reason}")
    rows: dict[str, Row] = {}
    used: dict[str, str] = {}
    print("kernel baselines", flush=True)
    kernel_runs(1500, rows, args)
    for port_io in args.io.split(","):
        print(f"OVS, port_io={port_io}", flush=True)
        used[f"OVS {port_io}"] = ovs_runs(port_io, 1500, rows, args)
    if args.nice0:
        print("OVS, port_io=auto, vswitchd at nice 0", flush=True)
        used["OVS auto, nice 0"] = ovs_runs("auto", 1500, rows, args, nice=None)
    if args.control:
        print("control: ovs-lab hand-made", flush=True)
        control_runs(rows, args)
    if args.jumbo:
        print("jumbo underlay (MTU 9000)", flush=True)
        kernel_runs(9000, rows, args)
        used["OVS auto MTU 9000"] = ovs_runs("auto", 9000, rows, args)
    report(rows, args, used)


if __name__ == "__main__":
    main()

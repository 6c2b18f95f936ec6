"""iperf3 TCP container to container across hosts: meshrouter's OVS path vs baselines.

In one run, on the same machine (issue 9's benchmark):

* meshrouter OVS (userspace datapath, set up by ``OvsDatapath``) with container
  and underlay ports on AF_XDP (``port_io=auto``) and on AF_PACKET, direct
  (c1 -> c2) and relayed (c1 -> c3 through h2, with the h1-h3 underlay blocked);
* kernel VXLAN + Linux bridge (the Flannel-style baseline), containers with
  default offloads;
* plain veth: host to host over the same underlay bridge, no overlay.

1 and 4 streams each; a table of Gbit/s, ratios to the kernel VXLAN baseline and
to plain veth, TCP retransmits, and the CPU of each ovs-vswitchd (% of one core),
which is where the OVS path's time goes.  With ``--counters``, each OVS
``direct P1`` run also prints h1's and h2's ``ovs-appctl
dpif-netdev/pmd-stats-show`` for that run (packets, megaflow hits, upcalls,
cycles per packet of the thread that polls the ports) and the busiest coverage
counters (``coverage/show``, per second).  ``perf`` is installed on these
machines but counts nothing (``perf stat`` says ``<not counted>``), so OVS's
own counters are what says where the time goes.  Root, OVS and iperf3 needed.

    python bench/datapath_throughput.py [--seconds 5] [--reps 1] [--counters]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshrouter.dataplane.ovs import OvsDatapath
from meshrouter.node.datapath import PortRequest
from tests.integration.flows import lab_flows
from tests.integration.lab import Container, Host, Lab, lab_skip_reason, sh


@dataclass
class Result:
    name: str
    streams: int
    gbps: list[float] = field(default_factory=list)
    retr: list[int] = field(default_factory=list)
    vswitchd: dict[str, float] = field(default_factory=dict)


def _cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds of each thread kind of ``pid`` (main, handler, revalidator, pmd, ...)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            head, tail = (task / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        name = head.split("(", 1)[1].rstrip("0123456789")
        fields = tail.split()
        kind = "main" if name.startswith("ovs-vswitchd") else name
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf(
            "SC_CLK_TCK")
    return out


def iperf(client_ns: str, server_ns: str, server_ip: str, streams: int, seconds: int,
          pidfile: Path, watch: dict[str, int]) -> tuple[float, int, dict[str, float]]:
    """One iperf3 run; (Gbit/s received, retransmits, vswitchd CPU % of a core per host
    and its busiest thread kind)."""
    sh("ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-D", "--pidfile", str(pidfile))
    time.sleep(0.5)
    before = {h: _cpu_seconds(p) for h, p in watch.items()}
    start = time.monotonic()
    try:
        out = sh("ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip, "-t", str(seconds),
                 "-P", str(streams), "-J", "--connect-timeout", "3000", check=False,
                 timeout=seconds + 30)
    finally:
        elapsed = time.monotonic() - start
        time.sleep(0.3)
        try:
            os.kill(int(pidfile.read_text().strip()), 15)
        except (OSError, ValueError):
            pass
    cpu: dict[str, float] = {}
    for h, p in watch.items():
        after = _cpu_seconds(p)
        busy = {k: 100 * (v - before[h].get(k, 0.0)) / elapsed for k, v in after.items()}
        cpu[h] = round(sum(busy.values()))
        top = max(busy, key=lambda k: busy[k]) if busy else "-"
        cpu[f"{h} top thread: {top}"] = round(busy.get(top, 0.0))
    try:
        end = json.loads(out)["end"]
        return (end["sum_received"]["bits_per_second"] / 1e9,
                int(end["sum_sent"].get("retransmits", 0)), cpu)
    except (ValueError, KeyError):
        return 0.0, -1, cpu


def counters_reset(hosts: list[Host]) -> None:
    for h in hosts:
        h.ovs("ovs-appctl", "dpif-netdev/pmd-stats-clear", check=False)


def counters_report(hosts: list[Host]) -> None:
    """pmd-stats-show (the polling thread's packets and cycles) and the busiest
    coverage counters (per second over the last 5 s) of each host's vswitchd."""
    for h in hosts:
        stats = h.ovs("ovs-appctl", "dpif-netdev/pmd-stats-show", check=False)
        print(f"  h{h.index} pmd-stats-show:", flush=True)
        for line in stats.splitlines():
            if line.strip():
                print(f"    {line.strip()}")
        coverage = h.ovs("ovs-appctl", "coverage/show", check=False)
        rows = []
        for line in coverage.splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1].endswith("/sec"):
                try:
                    rows.append((float(parts[1].removesuffix("/sec")), parts[0]))
                except ValueError:
                    continue
        top = ", ".join(f"{name} {rate:g}/s" for rate, name in sorted(rows, reverse=True)[:8])
        print(f"  h{h.index} busiest coverage counters: {top}", flush=True)


def measure(results: dict[str, Result], name: str, client: str, server: str, ip: str,
            args: argparse.Namespace, lab: Lab, watch: dict[str, int],
            counted: list[Host] | None = None) -> None:
    for streams in (1, 4):
        result = results.setdefault(f"{name} P{streams}", Result(name, streams))
        for rep in range(args.reps):
            count = counted if counted and streams == 1 and rep == 0 else []
            counters_reset(count)
            gbps, retr, cpu = iperf(client, server, ip, streams, args.seconds,
                                    lab.base / "iperf.pid", watch)
            counters_report(count)
            result.gbps.append(gbps)
            result.retr.append(retr)
            result.vswitchd = cpu
        print(f"  {name} P{streams}: {result.gbps} Gbit/s", flush=True)


def ovs_runs(port_io: str, results: dict[str, Result], args: argparse.Namespace) -> str:
    """Direct and relayed OVS paths with ports on ``port_io``; returns the I/O in use."""
    lab = Lab(subnet=78)
    used = "?"
    try:
        hosts = [lab.add_host() for _ in range(3)]
        containers = [lab.add_container(h) for h in hosts]
        c1, c2, c3 = containers

        async def main() -> None:
            nonlocal used
            dps = [OvsDatapath(h.settings(port_io=port_io, verify_interval=30)) for h in hosts]
            async with trio.open_nursery() as nursery:
                for dp in dps:
                    await nursery.start(dp.run)
                ports = {}
                for dp, c in zip(dps, containers, strict=True):
                    request = PortRequest(c.name, c.ns, "eth0", c.mac, f"{c.ip}/16")
                    ports[c.name] = (await dp.attach_port(request)).port
                for dp, h in zip(dps, hosts, strict=True):
                    await dp.apply(lab_flows(h, containers, ports))
                status = dps[0].status()["port_io"]
                used = f"underlay {status['underlay']}, containers {status['containers']}"
                watch = {f"h{h.index}": h.pid("ovs-vswitchd") or 0 for h in hosts}
                label = f"OVS {port_io}"
                await trio.to_thread.run_sync(_ping_ok, c1, c2)
                await trio.to_thread.run_sync(
                    measure, results, f"{label} direct", c1.ns, c2.ns, c2.ip, args, lab, watch,
                    hosts[:2] if args.counters else None)
                lab.block(hosts[0], hosts[2])
                relay = {(1, 3): hosts[1], (3, 1): hosts[1]}
                for dp, h in zip(dps, hosts, strict=True):
                    await dp.apply(lab_flows(h, containers, ports, relay))
                await trio.to_thread.run_sync(_ping_ok, c1, c3)
                await trio.to_thread.run_sync(
                    measure, results, f"{label} relay h1>h2>h3", c1.ns, c3.ns, c3.ip, args, lab,
                    watch)
                nursery.cancel_scope.cancel()

        trio.run(main)
    finally:
        lab.close()
    return used


def _ping_ok(a: Container, b: Container) -> None:
    for _ in range(20):
        if a.ping(b):
            return
    raise RuntimeError(f"{a.name} cannot reach {b.name}")


def kernel_runs(results: dict[str, Result], args: argparse.Namespace) -> None:
    """Kernel VXLAN + Linux bridge (as ovs-lab 05_kernel_baseline.sh), and plain veth."""
    lab = Lab(subnet=79)
    try:
        hosts: list[Host] = [lab.add_host(), lab.add_host()]
        containers = []
        for h in hosts:
            c = lab.add_container(h)
            containers.append(c)
            sh("ip", "-n", h.ns, "link", "add", "vxlan0", "type", "vxlan", "id", "4242",
               "dstport", "4789", "local", h.ip, "dev", "ul0", "nolearning")
            sh("ip", "-n", h.ns, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", h.ns, "link", "set", "vxlan0", "master", "br0", "up")
            sh("ip", "link", "add", "eth0", "netns", c.ns, "mtu", "1450", "type", "veth",
               "peer", "name", "c-p", "netns", h.ns, "mtu", "1450")
            sh("ip", "-n", h.ns, "link", "set", "c-p", "master", "br0", "up")
            sh("ip", "-n", h.ns, "link", "set", "br0", "up")
            sh("ip", "-n", c.ns, "addr", "add", f"{c.ip}/16", "dev", "eth0")
            sh("ip", "-n", c.ns, "link", "set", "eth0", "up")
        for h, other in ((hosts[0], hosts[1]), (hosts[1], hosts[0])):
            sh("ip", "netns", "exec", h.ns, "bridge", "fdb", "append", "00:00:00:00:00:00",
               "dev", "vxlan0", "dst", other.ip)
        _ping_ok(containers[0], containers[1])
        measure(results, "kernel VXLAN + bridge", containers[0].ns, containers[1].ns,
                containers[1].ip, args, lab, {})
        measure(results, "plain veth (no overlay)", hosts[0].ns, hosts[1].ns, hosts[1].ip,
                args, lab, {})
    finally:
        lab.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--counters", action="store_true",
                        help="print h1's and h2's OVS counters for the OVS direct P1 runs")
    args = parser.parse_args()
    reason = lab_skip_reason()
    if reason:
        sys.exit(f"cannot run: {reason}")
    results: dict[str, Result] = {}
    print("kernel baselines", flush=True)
    kernel_runs(results, args)
    used = {}
    for port_io in ("auto", "afpacket"):
        print(f"OVS, port_io={port_io}", flush=True)
        used[port_io] = ovs_runs(port_io, results, args)
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"\nload average {load} on 2 cores; {args.seconds} s x {args.reps} per row; "
          f"OVS auto = {used['auto']}; afpacket = {used['afpacket']}\n")
    print("| path | streams | Gbit/s | x kernel VXLAN | x plain | retransmits | "
          "vswitchd % of a core |")
    print("|---|---|---|---|---|---|---|")
    for r in results.values():
        gbps = statistics.median(r.gbps)
        kernel = statistics.median(results[f"kernel VXLAN + bridge P{r.streams}"].gbps)
        plain = statistics.median(results[f"plain veth (no overlay) P{r.streams}"].gbps)
        cpu = ", ".join(f"{h} {v}" for h, v in r.vswitchd.items()) or "-"
        print(f"| {r.name} | {r.streams} | {gbps:.2f} | {gbps / kernel:.2f} | "
              f"{gbps / plain:.2f} | {statistics.median(r.retr):.0f} | {cpu} |")


if __name__ == "__main__":
    main()

"""Attach on host 1 to the first ping from host 2, through the OVS shell alone.

Issue 9 measures this end to end through the CLI (goal p50 <= 100 ms); this is
the datapath's share of it: ``attach_port`` (veth + OVS port), the flow deltas on
both hosts (as the dataplane service would apply them), and the first
successful ping from a container on host 2.  The control plane's gossip of the
endpoint is not included.  Root and OVS needed.

With spare ports (``--port-pool``, the router's default 2) an attach takes a
ready port; ``--gap`` leaves the pool time to refill between attaches.

    python bench/datapath_attach.py [--attaches 20] [--port-io auto|afxdp|afxdp-pmd|afpacket]
        [--port-pool 2] [--gap 1]
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

from meshrouter.dataplane.ovs import OvsDatapath
from meshrouter.node.datapath import PortRequest
from tests.integration.flows import lab_flows
from tests.integration.lab import Container, Lab, lab_skip_reason


def first_ping(src: Container, dst: Container, limit: float = 10.0) -> float:
    """Seconds until one ping from ``src`` to ``dst`` succeeds (pings 0.1 s apart)."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        ok = subprocess.run(["ip", "netns", "exec", src.ns, "ping", "-c1", "-W0.2", dst.ip],
                            capture_output=True, check=False).returncode == 0
        if ok:
            return time.perf_counter() - start
    raise RuntimeError(f"{src.name} never reached {dst.name}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attaches", type=int, default=20)
    parser.add_argument("--port-io", default="auto",
                        choices=["auto", "afxdp", "afxdp-pmd", "afpacket"])
    parser.add_argument("--port-pool", type=int, default=2)
    parser.add_argument("--gap", type=float, default=1.0, help="seconds between attaches")
    args = parser.parse_args()
    reason = lab_skip_reason()
    if reason:
        sys.exit(f"cannot run: {reason}")
    lab = Lab(subnet=76)
    try:
        h1, h2 = lab.add_host(), lab.add_host()
        prober = lab.add_container(h2)
        targets = [lab.add_container(h1) for _ in range(args.attaches)]
        phases: dict[str, list[float]] = {"attach_port": [], "apply (both hosts)": [],
                                          "first ping": [], "total": []}

        async def run() -> None:
            dps = [OvsDatapath(h.settings(verify_interval=30, port_io=args.port_io,
                                          port_pool=args.port_pool)) for h in (h1, h2)]
            async with trio.open_nursery() as nursery:
                for dp in dps:
                    await nursery.start(dp.run)
                ports = {prober.name: (await dps[1].attach_port(PortRequest(
                    prober.name, prober.ns, "eth0", prober.mac, f"{prober.ip}/16"))).port}
                live = [prober]
                for dp, h in zip(dps, (h1, h2), strict=True):
                    await dp.apply(lab_flows(h, live, ports))
                for target in targets:
                    await trio.sleep(args.gap)
                    t0 = time.perf_counter()
                    port = await dps[0].attach_port(PortRequest(
                        target.name, target.ns, "eth0", target.mac, f"{target.ip}/16"))
                    t1 = time.perf_counter()
                    ports[target.name] = port.port
                    live.append(target)
                    async with trio.open_nursery() as both:
                        for dp, h in zip(dps, (h1, h2), strict=True):
                            both.start_soon(dp.apply, lab_flows(h, live, ports))
                    t2 = time.perf_counter()
                    ping_s = await trio.to_thread.run_sync(first_ping, prober, target)
                    phases["attach_port"].append(t1 - t0)
                    phases["apply (both hosts)"].append(t2 - t1)
                    phases["first ping"].append(ping_s)
                    phases["total"].append(t2 - t0 + ping_s)
                nursery.cancel_scope.cancel()

        trio.run(run)
    finally:
        lab.close()
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"| phase ({args.attaches} attaches, ports {args.port_io}, {args.port_pool} spares, "
          f"{args.gap:g} s apart, load average {load} on 2 cores) | p50 ms | p95 ms | mean ms |")
    print("|---|---|---|---|")
    for name, values in phases.items():
        print(f"| {name} | {pct(values, 0.5):.0f} | {pct(values, 0.95):.0f} | "
              f"{statistics.mean(values) * 1000:.0f} |")


if __name__ == "__main__":
    main()

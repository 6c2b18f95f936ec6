"""ADD and DEL latency of ``meshrouter-cni`` against a real router (root, Open vSwitch).

A lab host (network namespace) runs ``meshrouter launch peer --datapath ovs``; this
script then re-runs itself inside that namespace (where a runtime runs its plugins)
and, for each of N containers (namespaces), starts the plugin as a runtime does --
environment, config on stdin -- and times the process wall clock: ADD for every
container, then DEL for every container.  The plugin is the zipapp the DaemonSet's
init container installs (``meshrouter.cni.install``), run by this Python.

    sudo python bench/cni.py [--containers 50]

Prints p50/p95/max of ADD and DEL in milliseconds (the goal: ADD p50 under 200 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def inside(plugin: str, address_file: str, netns: list[str]) -> None:
    """In the host namespace: ADD then DEL for each container; print the timings as JSON."""
    conf = json.dumps({"cniVersion": "1.1.0", "name": "bench", "type": "meshrouter-cni",
                       "addressFile": address_file})
    timings: dict[str, list[float]] = {"ADD": [], "DEL": []}
    for command in ("ADD", "DEL"):
        for i, ns in enumerate(netns):
            env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": command,
                   "CNI_CONTAINERID": f"bench{i}", "CNI_NETNS": f"/run/netns/{ns}",
                   "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": ""}
            start = time.perf_counter()
            done = subprocess.run([sys.executable, plugin], input=conf, env=env,
                                  capture_output=True, text=True, timeout=120, check=False)
            timings[command].append((time.perf_counter() - start) * 1000)
            if done.returncode != 0:
                raise SystemExit(f"{command} bench{i} failed: {done.stdout}{done.stderr}")
    print(json.dumps(timings))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--inside", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inside:
        inside(options.inside[0], options.inside[1], options.inside[2:])
        return

    from meshrouter.cni.install import install
    from tests.integration.lab import Lab, lab_skip_reason

    reason = lab_skip_reason()
    if reason is not None:
        raise SystemExit(f"cannot run: {reason}")
    lab = Lab(subnet=79)
    try:
        host = lab.add_host()
        router = host.launch_router(extra=[
            "--datapath", "ovs", "--datapath-type", "netdev", "--underlay-dev", "ul0",
            "--ovs-daemons", "own", "--port-io", "afpacket", "--no-dns",
            "--ovs-db", str(host.base / "router" / "ovs" / "run" / "db.sock"),
            "--ipalloc-range", "10.79.0.0/16"])
        containers = [lab.add_container(host) for _ in range(options.containers)]
        bin_dir = Path(tempfile.mkdtemp(prefix="mrcni-", dir=lab.base))
        plugin = install(bin_dir, None, None, interpreter=sys.executable)[1]
        out = host.exec(sys.executable, str(Path(__file__).resolve()), "--inside", str(plugin),
                        str(router.data_dir / "addresses.json"), *[c.ns for c in containers],
                        timeout=1200)
        timings = json.loads(out.strip().splitlines()[-1])
        print(f"meshrouter-cni against a router with OVS (netdev), {options.containers} "
              f"containers, one at a time, {os.cpu_count()} CPUs")
        for command, values in timings.items():
            print(f"  {command}: p50 {percentile(values, 0.5):6.1f} ms   "
                  f"p95 {percentile(values, 0.95):6.1f} ms   max {max(values):6.1f} ms   "
                  f"mean {statistics.mean(values):6.1f} ms")
    finally:
        lab.close()


if __name__ == "__main__":
    main()

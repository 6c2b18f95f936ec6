"""ADD and DEL latency of ``meshrouter-cni`` against a real router (root, Open vSwitch).

A lab host (network namespace) runs ``meshrouter launch peer --datapath ovs``; this
script then re-runs itself inside that namespace (where a runtime runs its plugins)
and, for each of N containers (namespaces), starts the plugin as a runtime does --
environment, config on stdin -- and times the process wall clock: ADD for every
container, then DEL for every container.  The plugin is the zipapp the DaemonSet's
init container installs (``meshrouter.cni.install``), run by this Python.

    sudo python bench/cni.py [--containers 50]

Prints p50/p95/max of ADD and DEL in milliseconds (the goal: ADD p50 under 200 ms),
beside the same for ``python -IS -c pass`` (the floor any Python plugin pays),
VERSION (the plugin's own start-up, no request) and the router's share (the same
attach and detach as API requests from a running process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
    timings: dict[str, list[float]] = {}
    cpu: dict[str, float] = {}
    for command in ("python -IS -c pass", "VERSION", "ADD", "DEL"):
        timings[command] = []
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for i, ns in enumerate(netns):
            env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": command,
                   "CNI_CONTAINERID": f"bench{i}", "CNI_NETNS": f"/run/netns/{ns}",
                   "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": ""}
            argv = [sys.executable, "-IS", "-c", "pass"] if " " in command else [plugin]
            start = time.perf_counter()
            done = subprocess.run(argv, input=conf, env=env, capture_output=True, text=True,
                                  timeout=120, check=False)
            timings[command].append((time.perf_counter() - start) * 1000)
            if done.returncode != 0:
                raise SystemExit(f"{command} bench{i} failed: {done.stdout}{done.stderr}")
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        cpu[command] = used * 1000 / len(netns)
    # The router's share: the same attach and detach as API requests from this process.
    from meshrouter.api.client import ApiClient

    with open(address_file) as handle:
        client = ApiClient(json.load(handle)["api"], timeout=120)
    for command in ("POST /attach (API only)", "DELETE /attach (API only)"):
        timings[command] = []
        for i, ns in enumerate(netns):
            start = time.perf_counter()
            if command.startswith("POST"):
                client.request("POST", "/attach", {"container_id": f"api{i}",
                                                   "netns": f"/run/netns/{ns}"})
            else:
                client.request("DELETE", f"/attach/api{i}")
            timings[command].append((time.perf_counter() - start) * 1000)
        cpu[command] = -1.0  # spent in the router, not measured here
    print(json.dumps({"timings": timings, "cpu": cpu}))


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
        measured = json.loads(out.strip().splitlines()[-1])
        print(f"meshrouter-cni against a router with OVS (netdev), {options.containers} "
              f"containers, one at a time, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}; wall per process, and its CPU (user+sys) mean")
        for command, values in measured["timings"].items():
            print(f"  {command:>26}: p50 {percentile(values, 0.5):6.1f} ms   "
                  f"p95 {percentile(values, 0.95):6.1f} ms   max {max(values):6.1f} ms   "
                  f"mean {statistics.mean(values):6.1f} ms"
                  + (f"   CPU {measured['cpu'][command]:5.1f} ms"
                     if measured["cpu"][command] >= 0 else ""))
    finally:
        lab.close()


if __name__ == "__main__":
    main()

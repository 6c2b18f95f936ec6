"""``meshrouter-cni``: ADD/DEL latency and ``podman run`` to the first ping across hosts.

Three tables, one command (root, Open vSwitch; podman, runc, busybox-static for the
third; everything is made in lab namespaces and removed afterwards):

    sudo python bench/cni.py [--containers 50] [--starts 30] [--podman 10]
        [--gap 1] [--router-args '--port-pool 0']

1. **Start-up** of the plugin as the installer deploys it (``meshrouter.cni.install``:
   a zip of its modules and a launcher ``#!/usr/bin/python3 -IS``), no router: the
   floor any Python plugin pays (``python3 -IS -c pass``), VERSION (the plugin's whole
   start, no request), the pip console script (site-packages, for comparison), and
   the import breakdown from ``-X importtime``.
2. **ADD and DEL** over N containers against ``meshrouter launch peer --datapath ovs``
   in a lab host, the plugin started in the host's namespace exactly as a runtime
   does (``CNI_*`` environment, configuration on stdin) and timed per process; the
   router's share beside it, interleaved so both see the same load: the same attach
   and detach as API requests from a running process, and ``GET /status/dns`` (the
   ADD's second request).  ADD ~= VERSION + POST /attach + GET /status/dns.  Each
   attach and detach comes ``--gap`` seconds after the step before (containers that
   arrive now and then): the router makes a spare port 0.3 s after an attach, and an
   attach arriving while one is made pays for it (``--gap 0``: back to back).
3. **podman run -> first ping** (``--podman K``, 0 to skip): podman 4.3 (CNI backend,
   runc, imported busybox) on host 1 starts a container whose command pings a
   container on host 2 until one echo comes back, then prints a line; the clock runs
   from starting ``podman run`` to reading that line.  Beside it, the same container
   printing at once, with ``--network none`` (podman's and runc's own share) and on the
   mesh (adding the CNI ADD as podman runs it), so the rest is the mesh's readiness.

Figures taken while other work loads the machine are inflated: read the ratios, and
the load average printed with each table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.integration.lab import Host, Lab, RouterInHost

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SYSTEM_PYTHON = "/usr/bin/python3"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(label: str, values: list[float], extra: str = "") -> str:
    return (f"  {label:>34}: p50 {percentile(values, 0.5):7.1f} ms  p95 "
            f"{percentile(values, 0.95):7.1f} ms  max {max(values):7.1f} ms{extra}")


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)"


CPU: dict[str, list[float]] = {}
"""label -> CPU milliseconds (user + system) of each process ``timed`` ran: the figure
that load does not inflate (a loaded machine stretches wall time, not CPU time)."""


def timed(argv: list[str], env: dict[str, str], data: str = "", label: str = "") -> float:
    """Wall milliseconds of one process (its CPU time goes to ``CPU[label]``); it must
    succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, input=data, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stdout}{done.stderr}")
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU.setdefault(label, []).append(used * 1000)
    return elapsed


def cpu_text(label: str) -> str:
    values = CPU.get(label)
    return f"  CPU p50 {percentile(values, 0.5):5.1f} ms" if values else ""


def interpreter() -> str:
    """The installer's default (/usr/bin/python3 -IS) when that Python is this one's
    version (the zip carries this Python's bytecode); else this Python, -IS."""
    from tests.cni.runtime import installed_interpreter

    return installed_interpreter()


# -- 1. start-up --------------------------------------------------------------------------


def startup(starts: int) -> None:
    from meshrouter.cni.install import install

    python = interpreter().split()[0]
    with tempfile.TemporaryDirectory(prefix="mrcni-") as scratch:
        plugin = str(install(Path(scratch), None, None, interpreter=interpreter())[1])
        env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": "VERSION"}
        cases: dict[str, list[str]] = {
            f"floor: {Path(python).name} -IS -c pass": [python, "-IS", "-c", "pass"],
            "VERSION (installed launcher)": [plugin]}
        script = shutil.which("meshrouter-cni", path=str(Path(sys.executable).parent))
        if script is not None:
            cases["VERSION (pip console script)"] = [script]
        timings: dict[str, list[float]] = {label: [] for label in cases}
        for _ in range(starts):
            for label, argv in cases.items():
                timings[label].append(timed(argv, env, "{}", label))
        probe = subprocess.run([python, "-IS", "-X", "importtime", plugin], input="{}",
                               env=env, capture_output=True, text=True, timeout=60, check=True)
    print(f"\nmeshrouter-cni start-up, {starts} starts each, interleaved; {load()}")
    for label, values in timings.items():
        print(row(label, values, cpu_text(label)))
    imports = parse_importtime(probe.stderr)
    total = imports.get("meshrouter.cni.plugin", (0, 0))[1]
    print(f"  imports under -X importtime (inflated by the tracing): {total / 1000:.1f} ms in "
          "all; the largest by their own time:")
    largest = sorted(imports.items(), key=lambda item: -item[1][0])[:8]
    print("    " + ", ".join(f"{name} {own / 1000:.1f}" for name, (own, _) in largest))


def parse_importtime(text: str) -> dict[str, tuple[int, int]]:
    """module -> (own us, cumulative us) from ``-X importtime`` lines."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s+(\S+)", line)
        if match:
            out[match.group(3)] = (int(match.group(1)), int(match.group(2)))
    return out


# -- 2. ADD and DEL ---------------------------------------------------------------------


def server_cpu_ms(pids: list[int]) -> float:
    """CPU milliseconds used so far by the router (with the OVS tools it ran and
    reaped) and the host's OVS daemons: the server side of a request, which load
    does not inflate."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total * 1000 / os.sysconf("SC_CLK_TCK")


def inside(plugin: str, address_file: str, gap: float, pairs: list[str]) -> None:
    """In the host's namespace: per container, the plugin (ADD, later DEL) and the same
    request over the API for its twin namespace, interleaved, each attach and detach
    ``gap`` seconds after the previous step (so the router's background work after one
    -- making a spare port -- does not land on the next); timings as JSON."""
    from meshrouter.api.client import ApiClient

    with open(address_file) as handle:
        record = json.load(handle)
    client = ApiClient(record["api"], timeout=120)
    run = Path(address_file).parent / "ovs" / "run"
    pids = [int(record["pid"])]
    for daemon in ("ovs-vswitchd", "ovsdb-server"):
        try:
            pids.append(int((run / f"{daemon}.pid").read_text().strip()))
        except (OSError, ValueError):
            pass
    conf = json.dumps({"cniVersion": "1.1.0", "name": "bench", "type": "meshrouter-cni",
                       "addressFile": address_file})
    timings: dict[str, list[float]] = {}
    server: dict[str, list[float]] = {}

    # The router and OVS use CPU when idle too (heartbeats, OVS's own loops): measured
    # first, and taken off each step in proportion to its wall time.
    before, start = server_cpu_ms(pids), time.perf_counter()
    time.sleep(3)
    idle = (server_cpu_ms(pids) - before) / ((time.perf_counter() - start) * 1000)

    def step(label: str, action: Callable[[], float]) -> None:
        if not label.startswith(("VERSION", "GET")):
            time.sleep(gap)
        before = server_cpu_ms(pids)
        wall = action()
        timings.setdefault(label, []).append(wall)
        server.setdefault(label, []).append(server_cpu_ms(pids) - before - idle * wall)

    def request(method: str, path: str, body: dict[str, str] | None = None) -> float:
        start = time.perf_counter()
        client.request(method, path, body)
        return (time.perf_counter() - start) * 1000

    def plugin_run(command: str, i: int, ns: str, label: str) -> float:
        env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": f"bench{i}",
               "CNI_NETNS": f"/run/netns/{ns}", "CNI_IFNAME": "eth0",
               "CNI_PATH": "/opt/cni/bin", "CNI_ARGS": ""}
        return timed([plugin], env, conf, label)

    containers = [pair.split(",") for pair in pairs]
    for i, (ns, twin) in enumerate(containers):
        for label, command in (("VERSION (start-up only)", "VERSION"),
                               ("ADD (plugin process)", "ADD")):
            step(label, lambda c=command, x=i, n=ns, la=label: plugin_run(c, x, n, la))
        body = {"container_id": f"api{i}", "netns": f"/run/netns/{twin}"}
        step("POST /attach (API only)", lambda b=body: request("POST", "/attach", b))
        step("GET /status/dns (API only)", lambda: request("GET", "/status/dns"))
    for i, (ns, _twin) in enumerate(containers):
        step("DEL (plugin process)",
             lambda x=i, n=ns: plugin_run("DEL", x, n, "DEL (plugin process)"))
        step("DELETE /attach (API only)",
             lambda x=i: request("DELETE", f"/attach/api{x}"))
    print(json.dumps({"timings": timings, "cpu": CPU, "server": server, "idle": idle}))


def add_del(lab: Lab, host: Host, router: RouterInHost, count: int, gap: float) -> None:
    from meshrouter.cni.install import install

    containers = [(lab.add_container(host), lab.add_container(host)) for _ in range(count)]
    bin_dir = Path(tempfile.mkdtemp(prefix="mrcni-", dir=lab.base))
    plugin = install(bin_dir, None, None, interpreter=interpreter())[1]
    out = host.exec(sys.executable, str(Path(__file__).resolve()), "--inside", str(plugin),
                    str(router.data_dir / "addresses.json"), str(gap),
                    *[f"{a.ns},{b.ns}" for a, b in containers], timeout=1800)
    measured = json.loads(out.strip().splitlines()[-1])
    timings: dict[str, list[float]] = measured["timings"]
    CPU.update(measured["cpu"])
    server: dict[str, list[float]] = measured["server"]
    print(f"\nmeshrouter-cni ADD/DEL against a router with OVS (netdev), {count} containers one "
          f"at a time ({gap:g} s before each attach or detach), plugin run by "
          f"{interpreter()}; {load()}; wall per process or request;\n  "
          "CPU of the plugin process, and of the router (with the OVS tools it ran) and its "
          "OVS daemons while it ran,\n  beyond their idle use "
          f"({1000 * measured['idle']:.0f} ms of CPU per second; a mean: work the router "
          "finishes after answering counts toward the next step)")
    for label, values in timings.items():
        print(row(label, values, cpu_text(label)
                  + f"  router+OVS CPU {statistics.mean(server[label]):5.1f} ms"))
    p50 = {label: percentile(values, 0.5) for label, values in timings.items()}
    parts = (p50["VERSION (start-up only)"] + p50["POST /attach (API only)"]
             + p50["GET /status/dns (API only)"])
    print(f"  ADD p50 {p50['ADD (plugin process)']:.1f} ms ~ start-up + attach + status/dns "
          f"p50s = {parts:.1f} ms; the router's attach is "
          f"{100 * p50['POST /attach (API only)'] / p50['ADD (plugin process)']:.0f}% of ADD")


# -- 3. podman run -> first ping ----------------------------------------------------------


def podman_to_ping(lab: Lab, runs: int, extra: list[str]) -> None:
    from tests.cni.runtime import Podman, cni, conf, learn, podman_skip_reason, router_args

    reason = podman_skip_reason()
    if reason is not None:
        print(f"\npodman run -> first ping: not measured ({reason})")
        return
    h1, h2 = lab.hosts[0], lab.add_host()
    r1 = lab.routers[0]
    r2 = h2.launch_router(f"{h1.ip}:6783",
                          extra=[*router_args(h2, dns_listen=False, quick_failure=False),
                                 *extra])
    beta = lab.add_container(h2)
    status, result = cni(h2, "ADD", conf(r2), beta)
    if status != 0:
        raise SystemExit(f"ADD on host 2 failed: {result}")
    learn(beta, result)
    podman = Podman(h1, lab.base / "podman", r1.data_dir / "addresses.json")
    try:
        podman.import_busybox()
        # ping every 10 ms until the first reply: no ping start-up or timeout is
        # measured, only when the first echo comes back
        until_reply = (f"ping -i 0.01 -w 60 {beta.ip} | grep -q -m 1 from && echo reached "
                       "|| echo 'no reply within 60 s'")
        cases = {
            "--network none, echo": ("none", (), "echo reached"),
            "meshlab, echo (CNI ADD only)": ("meshlab", (), "echo reached"),
            "meshlab, first reply": ("meshlab", (), until_reply),
            "meshlab, ARP retry 10 ms, first reply": (
                "meshlab", ("--sysctl", "net.ipv4.neigh.eth0.retrans_time_ms=10"), until_reply),
        }
        timings: dict[str, list[float]] = {label: [] for label in cases}
        for i in range(runs):
            for n, (label, (network, options, command)) in enumerate(cases.items()):
                name = f"bench{i}-{n}"
                start = time.perf_counter()
                process = podman.popen("run", "--name", name, *Podman.RUN, *options,
                                       "--network", network, "meshbusy", "sh", "-c", command)
                assert process.stdout is not None
                line = process.stdout.readline()
                timings[label].append((time.perf_counter() - start) * 1000)
                process.wait(timeout=120)
                if line.strip() != "reached":
                    raise SystemExit(f"podman run {name}: {line!r}")
                podman("rm", "-f", "-t", "0", name)
        print(f"\npodman run (runc, busybox) on host 1 -> output, {runs} runs each, "
              f"interleaved; {load()}")
        for label, values in timings.items():
            print(row(label, values))
        bare = percentile(timings["--network none, echo"], 0.5)
        for label in list(cases)[1:]:
            mesh = percentile(timings[label], 0.5)
            print(f"  {label}: the network's share (p50 difference) {mesh - bare:.1f} ms, "
                  f"ratio to --network none {mesh / bare:.2f}")
        print("  (a new container's first ARP for a remote address is answered only once the "
              "other host has learned the container; the kernel asks again after "
              "retrans_time_ms, 1 s by default)")
    finally:
        podman.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--containers", type=int, default=50, help="ADD/DEL (0: skip)")
    parser.add_argument("--starts", type=int, default=30, help="start-ups of each kind")
    parser.add_argument("--podman", type=int, default=10, help="runs (0: skip)")
    parser.add_argument("--gap", type=float, default=1.0, metavar="S",
                        help="seconds before each attach or detach (0: back to back)")
    parser.add_argument("--router-args", default="", metavar="ARGS",
                        help="more `launch peer` arguments for the routers, e.g. "
                        "'--port-pool 0'")
    parser.add_argument("--inside", nargs="+", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.inside:
        inside(options.inside[0], options.inside[1], float(options.inside[2]),
               options.inside[3:])
        return

    from tests.cni.runtime import RANGE, cni, conf, router_args
    from tests.integration.lab import Lab, lab_skip_reason

    startup(options.starts)
    if options.containers <= 0 and options.podman <= 0:
        return
    reason = lab_skip_reason()
    if reason is not None:
        raise SystemExit(f"ADD/DEL and podman not measured: {reason}")
    lab = Lab(subnet=79)
    try:
        host = lab.add_host()
        extra = shlex.split(options.router_args)
        router = host.launch_router(
            extra=[*router_args(host, dns_listen=False, quick_failure=False), *extra])
        # One warm-up ADD (it founds the address ring, then the host exposes itself for
        # DNS); measure once the router names a nameserver, as a running host would.
        warm = lab.add_container(host)
        status, result = cni(host, "ADD", conf(router), warm)
        if status != 0:
            raise SystemExit(f"warm-up ADD failed: {result}")
        deadline = time.monotonic() + 30
        while not json.loads(router.cli("status", "dns", "--json")).get("nameserver"):
            if time.monotonic() > deadline:
                raise SystemExit("the router did not expose the host for DNS within 30 s")
            time.sleep(0.2)
        if options.containers > 0:
            add_del(lab, host, router, options.containers, options.gap)
        if options.podman > 0:
            podman_to_ping(lab, options.podman, extra)
        print(f"\n(address range {RANGE}; re-run on a quiet machine: sudo python bench/cni.py)")
    finally:
        lab.close()


if __name__ == "__main__":
    main()

"""Start-up time of the CLI: median wall milliseconds over N runs of each command,
next to the bare interpreter, so the figure that matters (what meshrouter adds)
is visible on a loaded machine too.

    python bench/cli_startup.py [--runs 20]

Commands measured: ``python -c pass`` (the floor), ``python -m meshrouter.cli
--help`` and ``python -m meshrouter.cli --api 127.0.0.1:1 status`` (a client
verb against nothing: start-up plus one refused connect).  With ``--imports``
it also prints the modules a client verb loads that it should not (trio, the
router, the simulator, httpx).  Runs are interleaved so load drifts hit every
command alike.

Each command is timed twice: with the environment as it is (here
PYTHONDONTWRITEBYTECODE=1, so every run compiles meshrouter's sources), and with
bytecode cached in a temporary PYTHONPYCACHEPREFIX, as for an installed package.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "meshrouter --help": [sys.executable, "-m", "meshrouter.cli", "--help"],
    "meshrouter --api 127.0.0.1:1 status": [
        sys.executable, "-m", "meshrouter.cli", "--api", "127.0.0.1:1", "status",
    ],
}

PROBE = """
import runpy, sys
sys.argv = ["meshrouter", "--api", "127.0.0.1:1", "status"]
try:
    runpy.run_module("meshrouter.cli", run_name="__main__")
except SystemExit:
    pass
heavy = ("trio", "sim", "httpx", "rich", "meshrouter.node", "meshrouter.api.server")
print(sorted(m for m in sys.modules if m.startswith(heavy)))
"""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_ms(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) milliseconds of one run.  CPU time is the
    steadier figure on a machine shared with other work."""
    cpu = _children_cpu()
    start = time.perf_counter()
    subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env
    )
    return (time.perf_counter() - start) * 1000, (_children_cpu() - cpu) * 1000


def measure(label: str, env: dict[str, str], runs: int) -> None:
    wall: dict[str, list[float]] = {name: [] for name in COMMANDS}
    cpu: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():
        run_ms(argv, env)  # warm the page cache (and the bytecode cache, if any)
    for _ in range(runs):
        for name, argv in COMMANDS.items():
            wall_ms, cpu_ms = run_ms(argv, env)
            wall[name].append(wall_ms)
            cpu[name].append(cpu_ms)
    floor_wall = statistics.median(wall["python -c pass"])
    floor_cpu = statistics.median(cpu["python -c pass"])
    print(f"{label}: medians over {runs} runs, ms ('added' = minus the bare interpreter)")
    print(f"  {'command':<38} {'wall':>7} {'added':>7} {'cpu':>7} {'added':>7}   wall min..max")
    for name in COMMANDS:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(
            f"  {name:<38} {w:7.1f} {w - floor_wall:7.1f} {c:7.1f} {c - floor_cpu:7.1f}"
            f"   {min(wall[name]):.0f}..{max(wall[name]):.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--imports", action="store_true", help="list heavy modules loaded")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    measure("environment as is", dict(os.environ), args.runs)
    with tempfile.TemporaryDirectory(prefix="cli-startup-pycache-") as cache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = cache
        measure("bytecode cached", env, args.runs)
    print(f"load average {os.getloadavg()[0]:.2f} after")
    if args.imports:
        loaded = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, check=False
        ).stdout.strip()
        print(f"heavy modules a client verb loads: {loaded}")


if __name__ == "__main__":
    main()

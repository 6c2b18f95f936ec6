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
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
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


def wall_ms(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return (time.perf_counter() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--imports", action="store_true", help="list heavy modules loaded")
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():
        wall_ms(argv)  # warm the page cache
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            samples[name].append(wall_ms(argv))
    floor = statistics.median(samples["python -c pass"])
    print(f"median wall time over {args.runs} runs (ms); 'added' = minus the bare interpreter")
    for name, values in samples.items():
        median = statistics.median(values)
        print(
            f"  {name:<38} {median:7.1f}   added {median - floor:6.1f}   "
            f"(min {min(values):.1f}, max {max(values):.1f})"
        )
    if args.imports:
        loaded = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, check=False
        ).stdout.strip()
        print(f"heavy modules a client verb loads: {loaded}")


if __name__ == "__main__":
    main()

"""The IPAM campaign: many seeded random fault schedules (partitions into 2-3
groups, heals, crashes with or without the data dir, restarts, allocation
bursts, releases, waits of 0.5-2x the reclaim delay), each followed by a full
heal.  "No address allocated on two live peers" is checked after every step;
rings must agree at the end, and no allocation that waited 20 s may be refused
while a reachable majority peer could have given an address
(``ipam-no-refusal-while-donatable``).  Bursts of 5-30 concurrent allocations at
one router are among the steps.  Prints the seeds that failed; replay seed S
alone with ``python bench/ipam_campaign.py 1 PEERS RANGES S``.

    python bench/ipam_campaign.py [SEEDS] [PEERS] [RANGES] [FIRST]  # default 200 8 /24 1
    python bench/ipam_campaign.py 200 8 small     # /26, /27, /28 in turn by seed
"""

from __future__ import annotations

import sys
import time

from _common import quiet

from sim.runner import SimOptions, run_simulation


def main() -> None:
    quiet()
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    peers = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    which = sys.argv[3] if len(sys.argv) > 3 else "/24"
    ranges = (["10.32.0.0/26", "10.32.0.0/27", "10.32.0.0/28"] if which == "small"
              else [f"10.32.0.0{which}"])
    first = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    start = time.perf_counter()
    failed: list[tuple[int, list[str]]] = []
    totals = {"allocations_met": 0, "allocations_unmet": 0, "reclaims": 0, "donations": 0,
              "duplicates_seen": 0}
    refusals = 0
    for seed in range(first, first + seeds):
        options = SimOptions(
            peers=peers, seed=seed, scenario="ipam-campaign", latency=0.005,
            loss=0.01 if seed % 2 else 0.0, heartbeat_interval=2.0, heartbeat_timeout=6.0,
            reclaim_after=20.0, duration=120.0, ipalloc_range=ranges[seed % len(ranges)],
        )
        result = run_simulation(options)
        assert result.ipam is not None
        for key in totals:
            totals[key] += int(result.ipam[key])
        refusals += sum(1 for v in result.violations
                        if v.invariant == "ipam-no-refusal-while-donatable")
        if result.violations or not result.converged:
            failed.append((seed, [str(v) for v in result.violations][:3]))
            print(f"seed {seed}: FAILED {failed[-1][1]}", flush=True)
        elif (seed - first + 1) % 20 == 0:
            print(f"{seed} seeds done, {time.perf_counter() - start:.0f} s", flush=True)
    print(
        f"{seeds} seeds x {peers} peers, ranges {', '.join(ranges)}: {len(failed)} failed; "
        f"duplicates found: {totals['duplicates_seen']}; refusals while a reachable "
        f"majority peer could donate: {refusals}; "
        f"allocations met {totals['allocations_met']}, "
        f"timed out {totals['allocations_unmet']}; reclaims {totals['reclaims']}; "
        f"donations {totals['donations']}; wall {time.perf_counter() - start:.0f} s"
    )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

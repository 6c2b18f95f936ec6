"""The IPAM campaign: many seeded random fault schedules (partitions into 2-3
groups, heals, crashes with or without the data dir, restarts, allocation
bursts, releases, waits of 0.5-2x the reclaim delay), each followed by a full
heal.  "No address allocated on two live peers" is checked after every step;
rings must agree at the end.  Prints the seeds that failed (replay one with
``python -m sim --scenario ipam-campaign --seed S ...``).

    python bench/ipam_campaign.py [SEEDS] [PEERS]      # default 200 8
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
    start = time.perf_counter()
    failed: list[tuple[int, list[str]]] = []
    totals = {"allocations_met": 0, "allocations_unmet": 0, "reclaims": 0, "donations": 0,
              "duplicates_seen": 0}
    for seed in range(1, seeds + 1):
        options = SimOptions(
            peers=peers, seed=seed, scenario="ipam-campaign", latency=0.005,
            loss=0.01 if seed % 2 else 0.0, heartbeat_interval=2.0, heartbeat_timeout=6.0,
            reclaim_after=20.0, duration=120.0, ipalloc_range="10.32.0.0/24",
        )
        result = run_simulation(options)
        assert result.ipam is not None
        for key in totals:
            totals[key] += int(result.ipam[key])
        if result.violations or not result.converged:
            failed.append((seed, [str(v) for v in result.violations][:3]))
            print(f"seed {seed}: FAILED {failed[-1][1]}", flush=True)
        elif seed % 20 == 0:
            print(f"{seed} seeds done, {time.perf_counter() - start:.0f} s", flush=True)
    print(
        f"{seeds} seeds x {peers} peers: {len(failed)} failed; duplicates found: "
        f"{totals['duplicates_seen']}; allocations met {totals['allocations_met']}, "
        f"timed out {totals['allocations_unmet']}; reclaims {totals['reclaims']}; "
        f"donations {totals['donations']}; wall {time.perf_counter() - start:.0f} s"
    )
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

"""The IPAM campaign: many seeded random fault schedules (partitions into 2-3
groups, heals, crashes with or without the data dir, restarts, allocation
bursts, releases, waits of 0.5-2x the reclaim delay), each followed by a full
heal.  "No address allocated on two live peers" is checked after every step;
rings must agree at the end, and no allocation that waited 20 s may be refused
while a reachable majority peer could have given an address
(``ipam-no-refusal-while-donatable``; a refusal whose requester's mesh did
not reach those peers -- topology convergence, not IPAM -- is counted apart as
``ipam-refusal-while-mesh-split``, and fails the seed too).  Bursts of 5-30
concurrent allocations at one router are among the steps.  Prints the seeds
that failed; replay seed S alone with
``python bench/ipam_campaign.py 1 PEERS RANGES S``.

    python bench/ipam_campaign.py [SEEDS] [PEERS] [RANGES] [FIRST] [JOBS]
        # default 200 8 /24 1 1
    python bench/ipam_campaign.py 200 8 small     # /26, /27, /28 in turn by seed
    nice -n 10 python bench/ipam_campaign.py 200 8 small 1 4   # 4 seeds at a time

Each seed is a deterministic run; JOBS > 1 runs seeds in that many processes
(the summary is the same, the order of the progress lines is not).
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from typing import Any

from _common import quiet

from sim.runner import SimOptions, run_simulation

TOTALS = ("allocations_met", "allocations_unmet", "reclaims", "donations", "duplicates_seen")


def run_seed(job: tuple[int, int, str]) -> dict[str, Any]:
    """One seed: its IPAM totals, refusals and (at most 3) violations."""
    seed, peers, address_range = job
    quiet()
    options = SimOptions(
        peers=peers, seed=seed, scenario="ipam-campaign", latency=0.005,
        loss=0.01 if seed % 2 else 0.0, heartbeat_interval=2.0, heartbeat_timeout=6.0,
        reclaim_after=20.0, duration=120.0, ipalloc_range=address_range,
    )
    result = run_simulation(options)
    assert result.ipam is not None
    return {
        "seed": seed,
        "range": address_range,
        "totals": {key: int(result.ipam[key]) for key in TOTALS},
        "refusals": sum(1 for v in result.violations
                        if v.invariant == "ipam-no-refusal-while-donatable"),
        "mesh_refusals": sum(1 for v in result.violations
                             if v.invariant == "ipam-refusal-while-mesh-split"),
        "failed": bool(result.violations) or not result.converged,
        "violations": [str(v) for v in result.violations][:3],
    }


def main() -> None:
    quiet()
    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    peers = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    which = sys.argv[3] if len(sys.argv) > 3 else "/24"
    ranges = (["10.32.0.0/26", "10.32.0.0/27", "10.32.0.0/28"] if which == "small"
              else [f"10.32.0.0{which}"])
    first = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    jobs = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    start = time.perf_counter()
    work = [(seed, peers, ranges[seed % len(ranges)]) for seed in range(first, first + seeds)]
    failed: list[tuple[int, list[str]]] = []
    totals = dict.fromkeys(TOTALS, 0)
    refusals = mesh_refusals = 0
    per_range: dict[str, dict[str, int]] = {
        r: dict.fromkeys(("seeds", "failed", *TOTALS), 0) for r in ranges}
    done = 0
    with multiprocessing.Pool(jobs) if jobs > 1 else _Serial() as pool:
        for outcome in pool.imap_unordered(run_seed, work):
            done += 1
            row = per_range[outcome["range"]]
            row["seeds"] += 1
            row["failed"] += int(outcome["failed"])
            for key in TOTALS:
                totals[key] += outcome["totals"][key]
                row[key] += outcome["totals"][key]
            refusals += outcome["refusals"]
            mesh_refusals += outcome["mesh_refusals"]
            if outcome["failed"]:
                failed.append((outcome["seed"], outcome["violations"]))
                print(f"seed {outcome['seed']}: FAILED {outcome['violations']}", flush=True)
            elif done % 20 == 0:
                print(f"{done} seeds done, {time.perf_counter() - start:.0f} s", flush=True)
    print(
        f"{seeds} seeds x {peers} peers, ranges {', '.join(ranges)}: {len(failed)} failed"
        f"{' (' + ', '.join(str(s) for s, _ in sorted(failed)) + ')' if failed else ''}; "
        f"duplicates found: {totals['duplicates_seen']}; refusals while a reachable "
        f"majority peer could donate: {refusals}; refusals while the requester's mesh "
        f"did not reach a donor of its network component (topology): {mesh_refusals}; "
        f"allocations met {totals['allocations_met']}, "
        f"timed out {totals['allocations_unmet']}; reclaims {totals['reclaims']}; "
        f"donations {totals['donations']}; wall {time.perf_counter() - start:.0f} s"
    )
    print(f"{'range':<16}{'seeds':>6}{'failed':>7}{'met':>7}{'unmet':>7}{'reclaims':>9}"
          f"{'donations':>10}{'duplicates':>11}")
    for name, row in per_range.items():
        print(f"{name:<16}{row['seeds']:>6}{row['failed']:>7}{row['allocations_met']:>7}"
              f"{row['allocations_unmet']:>7}{row['reclaims']:>9}{row['donations']:>10}"
              f"{row['duplicates_seen']:>11}")
    if failed:
        sys.exit(1)


class _Serial:
    """``Pool``'s interface, in this process (JOBS = 1: seeds in order)."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def imap_unordered(self, fn: Any, items: list[Any]) -> Any:
        return map(fn, items)


if __name__ == "__main__":
    main()

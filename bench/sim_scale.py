"""Join at scale: simulated and wall seconds for N peers to converge, peak RSS
and RSS per peer.

    python bench/sim_scale.py 100 200        # N=100, full mesh (limit 200)
    python bench/sim_scale.py 1000 16        # N=1000, connection limit 16
"""

from __future__ import annotations

import sys

from _common import quiet

from sim.runner import SimOptions, run_simulation


def main() -> None:
    quiet()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    result = run_simulation(SimOptions(peers=n, seed=1, conn_limit=limit, latency=0.01,
                                       check_sample=16, ipam=False))
    phase = result.phases[0]
    print(f"N={n} conn-limit={limit}: converged {phase.convergence_time} sim-s after the last "
          f"join ({result.simulated_seconds:.1f} sim-s in all), wall {result.wall_seconds:.1f} s, "
          f"peak RSS {result.peak_rss_mib:.0f} MiB, RSS/peer {result.rss_per_peer_kib:.0f} KiB, "
          f"topology gossip {result.channels.get('topology', {})}, "
          f"invariants violated: {len(result.violations)}")


if __name__ == "__main__":
    main()

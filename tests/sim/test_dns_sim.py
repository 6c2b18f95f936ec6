"""DNS over real Routers in the simulator: the three invariants of ``sim/dns.py``."""

from __future__ import annotations

import pytest

from sim.dns import run


@pytest.mark.parametrize("seed", [1, 2])
def test_dns_invariants_hold_on_a_small_mesh(seed: int) -> None:
    result = run(12, seed=seed, conn_limit=5, latency=0.01)
    # 1. After quiescence every live peer answers the same addresses per name,
    #    through the resolver too.
    assert result.agree_at_quiescence, result.notes
    # 2. A removal is everywhere within a few broadcast hops (10 ms links): as
    #    fast as the topology learned of a crash.
    assert result.removal_everywhere_after is not None
    assert result.crash_unreachable_everywhere_after is not None
    assert result.removal_everywhere_after <= result.crash_unreachable_everywhere_after + 0.05
    # 3. Never answered for while unreachable; answered again after the restart.
    assert result.answered_while_unreachable == 0
    assert result.crash_unanswered_everywhere_after is not None
    assert result.crash_unanswered_everywhere_after <= result.crash_unreachable_everywhere_after
    assert result.restart_answered_everywhere_after is not None
    assert result.restart_reachable_everywhere_after is not None
    # Its records are re-announced along its tree: answered as soon as reachable
    # (one 5 ms sample of slack), not at the next digest exchange.
    assert (result.restart_answered_everywhere_after
            <= result.restart_reachable_everywhere_after + 0.005)

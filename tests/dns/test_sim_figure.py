"""``python -m sim.dns N``'s figure: a detached container's record leaves every
peer's answers no later than a topology change of the same peer reaches every
peer (both are one broadcast on its tree), and the sentence says both."""

from __future__ import annotations

import pytest

from sim.dns import figure, run

pytestmark = pytest.mark.timeout(120)


def test_removal_is_as_fast_as_a_topology_change_and_the_sentence_says_so() -> None:
    result = run(12, seed=3, conn_limit=5, latency=0.01)
    removal, topology = result.removal_everywhere_after, result.topology_change_everywhere_after
    assert removal is not None and topology is not None
    assert 0 < removal <= topology + 0.01  # one 10 ms hop of slack
    sentence = figure(result)
    assert sentence.startswith("N = 12: a detached container's record disappears from every "
                               f"peer's answers within {removal:.3f} s of simulated time")
    assert f"reaches every peer in {topology:.3f} s" in sentence

"""The simulator's garbage-collector settings: applied for the run, restored after."""

from __future__ import annotations

import gc

import pytest

from sim.collector import COLLECTORS, collector
from sim.runner import SimOptions, Simulation, run_simulation

RELAXED = (100_000, 50, 100)  # written out: the test does not read the table it judges


def test_a_run_uses_the_relaxed_collector_and_restores_the_interpreters() -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    def inspect(_sim: Simulation) -> None:
        seen.append(gc.get_threshold())

    result = run_simulation(SimOptions(peers=3, ipam=False), inspect=inspect)
    assert result.converged
    assert seen == [RELAXED]
    assert gc.get_threshold() == before


def test_python_leaves_the_settings_alone_and_an_error_still_restores() -> None:
    before = gc.get_threshold()
    with collector("python"):
        assert gc.get_threshold() == before
    with pytest.raises(RuntimeError), collector("relaxed"):
        assert gc.get_threshold() == RELAXED
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == before
    with pytest.raises(ValueError, match="unknown collector setting 'fast'"), collector("fast"):
        pass
    assert sorted(COLLECTORS) == ["python", "relaxed"]

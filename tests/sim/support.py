"""What every simulator test asserts about a run it expects to succeed."""

from __future__ import annotations

from sim.runner import SimOptions, SimResult, run_simulation


def run_ok(options: SimOptions) -> SimResult:
    """Run ``options``; fail, naming the scenario and seed, unless every phase
    converged and no invariant was broken."""
    result = run_simulation(options)
    context = f"scenario {options.scenario} seed {options.seed}"
    assert result.converged, f"{context}: {[(p.name, p.converged) for p in result.phases]}"
    assert not result.violations, f"{context}: {[str(v) for v in result.violations]}"
    return result

"""What every simulator test asserts about a run it expects to succeed."""

from __future__ import annotations

from typing import Any

from meshrouter.names import PeerName
from sim.runner import SimOptions, SimResult, run_simulation


def run_ok(options: SimOptions) -> SimResult:
    """Run ``options``; fail, naming the scenario and seed, unless every phase
    converged and no invariant was broken."""
    result = run_simulation(options)
    context = f"scenario {options.scenario} seed {options.seed}"
    assert result.converged, f"{context}: {[(p.name, p.converged) for p in result.phases]}"
    assert not result.violations, f"{context}: {[str(v) for v in result.violations]}"
    return result


class RedirectedRoutes:
    """Real routes, except that traffic for ``dst`` goes to ``via`` (to plant a loop
    or a detour for an invariant to catch)."""

    def __init__(self, real: Any, dst: PeerName, via: PeerName) -> None:
        self._real, self._dst, self._via = real, dst, via

    def next_hop(self, dst: PeerName) -> PeerName | None:
        return self._via if dst == self._dst else self._real.next_hop(dst)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

"""bench/scale.py's build schedules: which peers start together, whom each is
given as contacts, and that a waves build waits for convergence between groups.

The figures the bench prints (one join into the converged mesh, one change's
propagation) only mean what they say if the build really is the schedule it
names, so the schedule is tested here; its cost is measured by the bench.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
import trio.testing

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load_scale() -> ModuleType:
    # The bench scripts import their sibling ``_common`` as a top-level module.
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH / "scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


scale = _load_scale()


@pytest.mark.parametrize(("n", "waves"), [(1, 4), (3, 4), (10, 4), (300, 4), (301, 3), (7, 7)])
def test_waves_partition_the_hosts_in_order(n: int, waves: int) -> None:
    groups = scale.Schedule("waves", 0.0, waves).groups(n)
    assert [i for g in groups for i in g] == list(range(n))
    assert len(groups) == min(waves, n)
    sizes = [len(g) for g in groups]
    assert max(sizes) - min(sizes) <= 1  # even waves: no tiny last one


@pytest.mark.parametrize("kind", ["sequential", "simultaneous"])
def test_other_schedules_are_one_group(kind: str) -> None:
    assert scale.Schedule(kind, 0.1, 4).groups(50) == [range(50)]
    assert scale.Schedule(kind, 0.1, 4).groups(0) == []


def test_defaults_per_mesh_and_the_old_schedule() -> None:
    assert scale.schedule_for("limited", None, 0.1, 4) == scale.Schedule("sequential", 0.1, 4)
    assert scale.schedule_for("full", None, 0.1, 4) == scale.Schedule("simultaneous", 0.0, 4)
    # The old schedule: every peer at once, whatever --join-interval says.
    old = scale.schedule_for("limited", "simultaneous", 0.1, 4)
    assert old.interval == 0.0 and old.groups(5) == [range(5)]


class _Host:
    def __init__(self, index: int) -> None:
        self.index = index


class _Cluster:
    def __init__(self, sim: _Sim) -> None:
        self.sim = sim

    def converged(self) -> bool:
        return self.sim.converged


class _Sim:
    """What build() uses of a Simulation: start_host, random_contacts, the cluster."""

    def __init__(self) -> None:
        self.cluster = _Cluster(self)
        self.converged = True
        self.log: list[tuple[float, str, Any]] = []

    async def start_host(self, host: _Host, contacts: list[_Host]) -> None:
        self.log.append((trio.current_time(), "start", (host.index, [c.index for c in contacts])))

    def random_contacts(self, among: list[_Host]) -> list[_Host]:
        return among[-2:]


def _run_build(schedule: Any, n: int) -> list[tuple[float, str, Any]]:
    sim = _Sim()
    hosts = [_Host(i) for i in range(n)]

    async def main() -> None:
        await scale.build(sim, hosts, schedule)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return sim.log


def test_waves_give_contacts_among_earlier_waves_and_start_a_wave_at_once() -> None:
    log = _run_build(scale.Schedule("waves", 0.0, 3), 9)
    starts = {index: (time, contacts) for time, _, (index, contacts) in log}
    # First wave: each peer contacts those started before it (the first none).
    assert [starts[i][1] for i in range(3)] == [[], [0], [0, 1]]
    for i in range(3, 9):
        earlier_waves = (i // 3) * 3
        assert all(c < earlier_waves for c in starts[i][1]), (i, starts[i])
        assert starts[i][1]  # never alone
    # A wave starts at one instant; the next only after the build converged
    # (wait_converged holds agreement for its settle time, 3 s).
    for w in range(3):
        assert len({starts[i][0] for i in range(3 * w, 3 * w + 3)}) == 1
    assert starts[3][0] - starts[0][0] >= 3.0
    assert starts[6][0] - starts[3][0] >= 3.0


def test_sequential_spaces_the_starts_and_contacts_running_peers() -> None:
    log = _run_build(scale.Schedule("sequential", 0.1, 4), 5)
    times = [time for time, _, _ in log]
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert [contacts for _, _, (_, contacts) in log] == [[], [0], [0, 1], [1, 2], [2, 3]]


def test_simultaneous_start_yields_between_starts_like_the_old_schedule() -> None:
    """sim.join_all sleeps 0 s after each start with --join-interval 0, so the
    routers already started run between starts; the old schedule is only
    reproduced (same messages, same routes) if build() does the same."""
    sim = _Sim()
    hosts = [_Host(i) for i in range(4)]
    ticks: list[int] = [0]
    seen: list[int] = []

    async def start_host(host: _Host, contacts: list[_Host]) -> None:
        seen.append(ticks[0])

    sim.start_host = start_host  # type: ignore[method-assign]

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await trio.lowlevel.checkpoint()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ticker)
            await trio.lowlevel.checkpoint()
            await scale.build(sim, hosts, scale.Schedule("simultaneous", 0.0, 4))
            nursery.cancel_scope.cancel()

    trio.run(main)
    # The ticker runs once per scheduling round, before or after build() within
    # it: three yields give it 3 +- 1 turns; no yield, none.
    assert len(seen) == 4 and seen[-1] - seen[0] >= 2, seen


def test_a_failed_row_says_why_instead_of_a_bare_exit_status() -> None:
    import subprocess

    # A row that printed figures and then failed still failed.
    failed = subprocess.CompletedProcess(["scale.py"], 1, stdout='{"n": 300}\n',
                                         stderr="warning: refused\nRuntimeError: boom\n")
    with pytest.raises(SystemExit, match=r"N = 300 limited row failed \(exit status 1\)"
                                         r"(.|\n)*RuntimeError: boom"):
        scale.row_figures(300, "limited", failed)
    ok = subprocess.CompletedProcess(["scale.py"], 0, stdout='log\n{"n": 100}\n', stderr="")
    assert scale.row_figures(100, "full", ok) == {"n": 100}

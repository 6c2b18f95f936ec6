"""``neighbours.resolve``: probe only what the kernel lacks, wait a bounded time."""

from __future__ import annotations

import pytest

from meshrouter.dataplane import neighbours


class FakeKernel:
    """Neighbour table that learns each probed address after ``delay`` simulated seconds."""

    def __init__(self, known: dict[str, str], learns: dict[str, float]) -> None:
        self.now = 0.0
        self.known = dict(known)
        self.learns = learns  # address -> delay after its probe
        self.probed: list[list[str]] = []
        self.pending: dict[str, float] = {}

    def probe(self, addresses: list[str]) -> None:
        self.probed.append(list(addresses))
        for a in addresses:
            if a in self.learns:
                self.pending[a] = self.now + self.learns[a]

    def macs(self, addresses: list[str]) -> dict[str, str]:
        for a, at in list(self.pending.items()):
            if at <= self.now:
                self.known[a] = "02:00:00:00:00:" + a.rsplit(".", 1)[1].zfill(2)
                del self.pending[a]
        return {a: self.known[a] for a in addresses if a in self.known}

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    k = FakeKernel({"10.0.0.1": "02:00:00:00:00:01"}, {"10.0.0.2": 0.1, "10.0.0.3": 5.0})
    monkeypatch.setattr(neighbours, "send_probe", k.probe)
    monkeypatch.setattr(neighbours, "known_macs", k.macs)
    return k


def test_known_neighbours_are_not_probed(kernel: FakeKernel) -> None:
    got = neighbours.resolve(["10.0.0.1"], 1.0, clock=lambda: kernel.now, sleep=kernel.sleep)
    assert got == {"10.0.0.1": "02:00:00:00:00:01"}
    assert kernel.probed == []


def test_waits_for_the_kernel_then_gives_up_on_the_slow_one(kernel: FakeKernel) -> None:
    got = neighbours.resolve(["10.0.0.1", "10.0.0.2", "10.0.0.3"], 1.0,
                             clock=lambda: kernel.now, sleep=kernel.sleep)
    assert got == {"10.0.0.1": "02:00:00:00:00:01", "10.0.0.2": "02:00:00:00:00:02"}
    assert kernel.probed == [["10.0.0.2", "10.0.0.3"]]
    assert 1.0 <= kernel.now < 1.0 + 2 * neighbours.POLL_INTERVAL


def test_stops_waiting_once_all_are_known(kernel: FakeKernel) -> None:
    neighbours.resolve(["10.0.0.2"], 1.0, clock=lambda: kernel.now, sleep=kernel.sleep)
    assert kernel.now < 0.1 + 2 * neighbours.POLL_INTERVAL

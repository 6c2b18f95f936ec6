"""``python -m sim --ipalloc-range CIDR``: the simulated routers' range reaches the run,
and a range the routers would refuse is refused by the command, in one line."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

import sim.cli
from sim.runner import SimOptions, SimResult


def test_the_range_reaches_the_simulation(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SimOptions] = []

    def fake_run(options: SimOptions, **_kwargs: Any) -> SimResult:
        seen.append(options)
        raise SystemExit(0)  # the options are all this test needs

    monkeypatch.setattr(sim.cli, "run_simulation", fake_run)
    result = CliRunner().invoke(
        sim.cli.main, ["--scenario", "ipam", "--ipalloc-range", "10.40.0.0/26"])
    assert result.exit_code == 0, result.output
    assert [o.ipalloc_range for o in seen] == ["10.40.0.0/26"]
    assert seen[0].router_settings()["ipalloc_range"] == "10.40.0.0/26"


def test_the_default_range_is_the_simulators_own(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SimOptions] = []

    def fake_run(options: SimOptions, **_kwargs: Any) -> SimResult:
        seen.append(options)
        raise SystemExit(0)

    monkeypatch.setattr(sim.cli, "run_simulation", fake_run)
    assert CliRunner().invoke(sim.cli.main, []).exit_code == 0
    assert seen[0].ipalloc_range == "10.32.0.0/16"


@pytest.mark.parametrize(("value", "says"), [
    ("10.40.0.0/33", "is not a CIDR"),
    ("10.40.0.1/26", "is not a CIDR"),  # host bits set
    ("10.40.0.0/31", "too small"),
    ("fd00::/64", "only IPv4"),
])
def test_a_bad_range_is_refused_in_one_line(value: str, says: str) -> None:
    result = CliRunner().invoke(sim.cli.main, ["--ipalloc-range", value])
    assert result.exit_code == 2
    assert "Invalid value for '--ipalloc-range'" in result.output and says in result.output

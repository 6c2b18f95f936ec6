"""`launch peer`'s PMD and vswitchd options reach OvsSettings; a bad mask is refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from meshrouter.cli import main
from meshrouter.cli.launch import launch
from meshrouter.cli.launch_features import make_datapath
from meshrouter.dataplane.ovs.portio import usable_cpus
from meshrouter.errors import ConfigError


def launch_options(*args: str) -> dict[str, Any]:
    """The option values `launch peer` would pass on, parsed by click itself."""
    peer = launch.commands["peer"]
    context = peer.make_context("peer", list(args), resilient_parsing=True)
    return dict(context.params)


def test_the_mask_and_the_sleep_reach_the_datapath_settings(tmp_path: Path) -> None:
    options = launch_options("--pmd-cpu-mask", "0x2", "--pmd-max-sleep", "0",
                             "--port-io", "afxdp-pmd")
    datapath: Any = make_datapath(options, tmp_path, "127.0.0.1")
    assert (datapath.settings.pmd_cpu_mask, datapath.settings.pmd_max_sleep_us) == ("0x2", 0)
    assert datapath.settings.port_io == "afxdp-pmd"


def test_defaults_leave_the_mask_to_the_datapath(tmp_path: Path) -> None:
    datapath: Any = make_datapath(launch_options(), tmp_path, "127.0.0.1")
    assert (datapath.settings.pmd_cpu_mask, datapath.settings.pmd_max_sleep_us) == (None, 100)


def test_a_bad_mask_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid PMD CPU mask 'zz'"):
        make_datapath(launch_options("--pmd-cpu-mask", "zz"), tmp_path, "127.0.0.1")


def test_a_sleep_out_of_range_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["launch", "peer", "--pmd-max-sleep", "20000"])
    assert result.exit_code == 2
    assert "--pmd-max-sleep" in result.output


def test_a_mask_outside_the_routers_cpus_is_refused_at_construction(tmp_path: Path) -> None:
    cpus = sorted(usable_cpus())
    outside = hex(1 << (max(cpus) + 1))
    with pytest.raises(ConfigError, match=f"PMD CPU mask {outside} names none of the CPUs"):
        make_datapath(launch_options("--pmd-cpu-mask", outside), tmp_path, "127.0.0.1")
    inside = hex(1 << cpus[0])  # one usable CPU is enough
    datapath: Any = make_datapath(launch_options("--pmd-cpu-mask", inside), tmp_path,
                                  "127.0.0.1")
    assert datapath.settings.pmd_cpu_mask == inside


def test_af_packet_ports_ignore_the_mask(tmp_path: Path) -> None:
    outside = hex(1 << (max(usable_cpus()) + 1))
    options = launch_options("--pmd-cpu-mask", outside, "--port-io", "afpacket")
    assert make_datapath(options, tmp_path, "127.0.0.1") is not None


def test_the_vswitchd_nice_reaches_the_settings(tmp_path: Path) -> None:
    default: Any = make_datapath(launch_options(), tmp_path, "127.0.0.1")
    assert default.settings.vswitchd_nice == -10
    datapath: Any = make_datapath(launch_options("--vswitchd-nice", "0"), tmp_path, "127.0.0.1")
    assert datapath.settings.vswitchd_nice == 0
    result = CliRunner().invoke(main, ["launch", "peer", "--vswitchd-nice", "-21"])
    assert result.exit_code == 2 and "--vswitchd-nice" in result.output

"""The tables of ``meshrouter status [SECTION]`` from canned API answers: every
value the JSON has for a row appears in its table, spelled as the table spells it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from meshrouter.cli import main
from meshrouter.cli.client_verbs import STATUS_SECTIONS
from meshrouter.cli.render import RENDERERS, make_console, print_status
from tests.test_cli_client import FakeApi, running_fake_api


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    with running_fake_api() as fake:
        yield fake

# ":cd:" and ":ok:" are emoji codes and "[b]" is markup to rich: shown as they are.
A, B, C = "aa:00:00:00:00:01", "f6:cd:6b:62:67:fb", "aa:00:00:00:00:03"

PEERS = [
    {"name": A, "nickname": "alpha", "uid": 1, "short_id": 17, "version": 4, "connections": [
        {"peer": B, "address": "127.0.0.1:7001", "outbound": True, "established": True},
        {"peer": C, "address": "127.0.0.1:7002", "outbound": False, "established": False},
    ]},
    {"name": B, "nickname": "bravo[b]:ok:", "uid": 2, "short_id": 942, "version": 11,
     "connections": []},
]
TARGETS = [
    {"address": "127.0.0.1:7001", "direct": True, "state": "established", "peer": B,
     "info": "connected", "attempts": 1, "next_attempt_in": None},
    {"address": "127.0.0.1:7009", "direct": False, "state": "retrying", "peer": "",
     "info": "[Errno 111] refused; retry in 3.2s", "attempts": 2, "next_attempt_in": 3.2},
]


def rendered(section: str | None, data: Any) -> list[str]:
    console = make_console()
    console.file = io.StringIO()
    console.record = True
    print_status(section, data, console)
    return [line.rstrip() for line in console.export_text().splitlines()]


def row_with(lines: list[str], text: str) -> list[str]:
    """The cells of the one table row that contains ``text``."""
    (line,) = [line.strip() for line in lines if text in line]
    assert line.startswith("│") and line.endswith("│"), line
    return [cell.strip() for cell in line[1:-1].split("│")]


def test_peers_table() -> None:
    lines = rendered("peers", PEERS)
    assert "2 peers" in lines[0]
    assert row_with(lines, "alpha") == [A, "alpha", "17", "4", "", f"->{B}, <-{C} (pending)"]
    assert row_with(lines, "bravo") == [B, "bravo[b]:ok:", "942", "11", "", ""]


def test_peers_table_shows_direct_and_relayed_data_paths() -> None:
    peers = [dict(PEERS[0], data_path={"path": "direct", "via": A}),
             dict(PEERS[1], data_path={"path": "relayed", "via": C})]
    lines = rendered("peers", peers)
    assert row_with(lines, "alpha")[4] == "direct"
    assert row_with(lines, "bravo")[4] == f"relayed via {C}"


def test_targets_table() -> None:
    lines = rendered("targets", TARGETS)
    assert "2 targets" in lines[0]
    assert row_with(lines, ":7001") == ["127.0.0.1:7001", "direct", "established", B, "connected"]
    assert row_with(lines, ":7009") == [
        "127.0.0.1:7009", "discovered", "retrying", "", "[Errno 111] refused; retry in 3.2s"
    ]


def test_every_status_section_has_a_table() -> None:
    assert set(RENDERERS) == {None, *STATUS_SECTIONS}


def test_status_peers_through_the_cli(fake_api: FakeApi) -> None:
    fake_api.json("GET", "/status/peers", PEERS)
    result = CliRunner().invoke(main, ["--api", fake_api.address, "status", "peers"])
    assert result.exit_code == 0
    assert f"->{B}, <-{C} (pending)" in result.stdout and "bravo" in result.stdout


def test_status_graph_writes_the_picture(fake_api: FakeApi, tmp_path: Path) -> None:
    facts = {
        "local": A,
        "peers": [{"name": A, "nickname": "alpha", "addresses": 3, "containers": 1},
                  {"name": B, "nickname": "bravo", "addresses": 0, "containers": 0}],
        "links": [{"a": A, "b": B, "state": "established"}],
        "paths": [{"peer": B, "path": "direct", "via": B}],
    }
    fake_api.json("GET", "/graph/facts", facts)
    target = tmp_path / "mesh.svg"
    result = CliRunner().invoke(main, ["--api", fake_api.address, "status", "--graph",
                                       str(target)])
    assert result.exit_code == 0, result.output
    svg = target.read_text()
    assert svg.startswith("<svg") and "alpha" in svg and "bravo" in svg


def test_datapath_line_names_the_port_io_and_why_af_packet() -> None:
    from meshrouter.cli.render import datapath_text

    status = {"type": "ovs-netdev", "bridge": "mr-int", "flows": 42, "health": "ok",
              "port_io": {"underlay": "afxdp", "containers": ["afxdp"], "why": "probed"}}
    assert datapath_text(status) == (
        "ovs-netdev, bridge mr-int, 42 flows, underlay afxdp, containers afxdp, ok")
    status["port_io"] = {"underlay": "afxdp", "containers": ["afpacket", "afxdp"],
                         "why": "AF_XDP unusable here: no XDP sockets"}
    assert datapath_text(status) == (
        "ovs-netdev, bridge mr-int, 42 flows, underlay afxdp, containers afpacket, afxdp, "
        "(AF_XDP unusable here: no XDP sockets), ok")


def test_status_expose_table(capsys: pytest.CaptureFixture[str]) -> None:
    print_status("expose", {"state": "exposed", "auto": True, "address": "10.32.0.1/12",
                            "interface": "mr-expose", "mode": "auto", "error": ""})
    text = capsys.readouterr().out
    assert "exposed (automatic)" in text and "10.32.0.1/12" in text and "mr-expose" in text

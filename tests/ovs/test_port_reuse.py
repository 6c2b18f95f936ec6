"""An existing OVS port is kept only when its type is the one it would get now."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from meshrouter.dataplane.ovs.bridges import add_port_with_io


class RecordingTools:
    """Answers ``find Interface`` with one row of ``type``; records every call."""

    def __init__(self, port_type: str) -> None:
        self.port_type = port_type
        self.calls: list[tuple[str, ...]] = []

    async def vsctl(self, *args: str) -> str:
        self.calls.append(args)
        if "find" in args:
            row = ["ul0", self.port_type, 5, ["set", []], ["map", []], ["map", []]]
            return json.dumps({"headings": ["name", "type", "ofport", "error",
                                            "external_ids", "options"], "data": [row]})
        if "add-port" in args:
            self.port_type = next((a.split("=", 1)[1] for a in args if a.startswith("type=")), "")
        return ""


def add(tools: RecordingTools, port_io: str, mtu: int) -> tuple[str, dict[str, Any]]:
    async def go() -> tuple[str, dict[str, Any]]:
        return await add_port_with_io(tools, "mr-phy", "ul0", port_io, [],  # type: ignore[arg-type]
                                      mtu=mtu)
    return trio.run(go)


def re_added(tools: RecordingTools) -> bool:
    return any("add-port" in call for call in tools.calls)


@pytest.mark.parametrize(("existing", "port_io", "mtu"), [
    ("afxdp", "afxdp-pmd", 1500),
    ("afxdp-nonpmd", "afxdp", 1500),
    ("", "afpacket", 1500),
    ("", "afxdp-pmd", 9000),  # too big for AF_XDP: AF_PACKET is what it gets now
])
def test_a_port_of_the_right_type_is_kept(existing: str, port_io: str, mtu: int) -> None:
    tools = RecordingTools(existing)
    add(tools, port_io, mtu)
    assert not re_added(tools)


@pytest.mark.parametrize(("existing", "port_io", "mtu", "now"), [
    ("afxdp", "afxdp-pmd", 9000, ""),  # the MTU grew past AF_XDP's limit: black hole
    ("afxdp-nonpmd", "afxdp-pmd", 1500, "afxdp"),  # auto moved to a PMD
    ("afxdp", "afpacket", 1500, ""),
])
def test_a_port_of_another_type_is_made_again(existing: str, port_io: str, mtu: int,
                                               now: str) -> None:
    tools = RecordingTools(existing)
    io, _ = add(tools, port_io, mtu)
    assert re_added(tools)
    assert tools.port_type == now
    assert io == ("afxdp" if now else "afpacket")

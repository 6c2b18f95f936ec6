"""What ``meshrouter demo`` needs on this machine, said before anything is made."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TOOLS = {
    "ip": "iproute2",
    "nft": "nftables",
    "ping": "iputils-ping",
    "sysctl": "procps",
    "ovsdb-server": "openvswitch-switch",
    "ovs-vswitchd": "openvswitch-switch",
    "ovsdb-tool": "openvswitch-switch",
    "ovs-vsctl": "openvswitch-switch",
    "ovs-ofctl": "openvswitch-switch",
    "ovs-appctl": "openvswitch-switch",
}
SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")


def missing_requirements() -> list[str]:
    """One line per missing requirement, naming the Debian package; [] if ready."""
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (it creates network namespaces): run it with sudo")
    packages = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not SCHEMA.exists() and "openvswitch-switch" not in packages:
        packages.append("openvswitch-switch")
    if packages:
        problems.append(f"missing tools: apt-get install {' '.join(packages)}")
    return problems

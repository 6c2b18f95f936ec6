"""The namespace lab: one implementation for the demo, the integration tests and benches.

Layout (as /work/shared/ovs-lab/NOTES.md; every name starts with the run's
``prefix``, so runs never collide and leftovers are recognisable):

* ``<p>ul``: holds the Linux bridge ``br-ul``, the underlay switch;
* ``<p>h<N>``: one per host, with ``ul0`` (a veth whose peer sits on ``br-ul``)
  holding ``<underlay_net>.N/24``.  A router launched inside (or an
  ``OvsDatapath`` told the namespace) starts its own ovsdb-server and
  ovs-vswitchd there, under the run directory;
* container namespaces, made by the caller with ``netns_add``.

Everything the run starts lives under its run directory ``base``: routers'
data directories and OVS daemons' pidfiles.  ``remove_run`` ends exactly those
processes (a pidfile under ``base`` *and* ``base`` in the command line, so a
recycled PID is never ours) plus whatever runs inside the run's own
namespaces, then deletes the namespaces, their ``/etc/netns`` entries and the
directory.  It never raises, so it is safe in ``finally`` and in a sweep of a
dead run's leftovers.  The root namespace is never touched: links are made
directly inside our namespaces, and all traffic stays on ``br-ul``.

``block(a, b)`` drops underlay frames between two hosts with a ``bridge``
family rule on ``br-ul`` (NOTES P4: a rule in the host would not see OVS's
AF_PACKET output).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from meshrouter.demo import procs
from meshrouter.demo.procs import sh
from meshrouter.errors import DemoError

NETNS_ETC = Path("/etc/netns")
BLOCK_TABLE = "mrlab"
"""The nft table of ``block`` (in the run's own underlay namespace)."""


class LabHost(Protocol):
    index: int
    ip: str


def netns_list() -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list", check=False).splitlines()
            if line.strip()]


class NetLab:
    """The namespaces of one run: underlay switch, hosts, containers; see the module doc."""

    def __init__(self, prefix: str, base: Path, underlay_net: str) -> None:
        self.prefix = prefix
        self.base = base
        self.underlay_net = underlay_net
        self.namespaces: list[str] = []
        self.blocked: set[tuple[int, int]] = set()
        self.ul = f"{prefix}ul"

    def netns_add(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        # IPv6 off: no MLD/RS noise in the flows (NOTES section 1)
        sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1")

    def add_underlay(self) -> None:
        """The underlay switch (made apart from ``__init__``, so that a failure or a
        Ctrl-C at any point after the run directory exists finds a lab to close)."""
        self.netns_add(self.ul)
        sh("ip", "-n", self.ul, "link", "add", "br-ul", "type", "bridge")
        sh("ip", "-n", self.ul, "link", "set", "br-ul", "up")

    def host_netns(self, index: int, mtu: int | None = None) -> tuple[str, str]:
        """Host ``index``'s namespace on the underlay: (its name, its underlay address)."""
        ns = f"{self.prefix}h{index}"
        self.netns_add(ns)
        peer = f"h{index}-ul"
        sized = ["mtu", str(mtu)] if mtu is not None else []
        sh("ip", "link", "add", "ul0", "netns", ns, *sized, "type", "veth",
           "peer", "name", peer, "netns", self.ul, *sized)
        sh("ip", "-n", self.ul, "link", "set", peer, "master", "br-ul", "up")
        ip = f"{self.underlay_net}.{index}"
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "ul0")
        sh("ip", "-n", ns, "link", "set", "ul0", "up")
        return ns, ip

    def forget_namespace(self, name: str) -> None:
        """Delete a namespace now (a container dying under the router)."""
        sh("ip", "netns", "del", name)
        self.namespaces.remove(name)

    # -- underlay faults --------------------------------------------------------------

    def block(self, a: LabHost, b: LabHost) -> None:
        """Drop all underlay frames between ``a`` and ``b`` (both ways)."""
        rules = (
            f"table bridge {BLOCK_TABLE} {{\n"
            f"  chain cut{a.index}{b.index} {{\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"    ip saddr {a.ip} ip daddr {b.ip} counter drop\n"
            f"    ip saddr {b.ip} ip daddr {a.ip} counter drop\n"
            "  }\n}\n"
        )
        sh("ip", "netns", "exec", self.ul, "nft", "-f", "-", input_text=rules)
        self.blocked.add((a.index, b.index))

    def unblock(self, a: LabHost, b: LabHost) -> None:
        sh("ip", "netns", "exec", self.ul, "nft", "delete", "chain", "bridge", BLOCK_TABLE,
           f"cut{a.index}{b.index}", check=False)
        self.blocked.discard((a.index, b.index))

    # -- teardown ---------------------------------------------------------------------

    def our_pids(self) -> list[int]:
        """Live processes named by the run's pidfiles (and naming the run directory)."""
        return procs.pids_from_files(run_pidfiles(self.base), str(self.base))

    def remove(self) -> list[str]:
        """``remove_run`` for this run; returns what could not be removed."""
        left = remove_run(self.base, self.prefix)
        self.namespaces.clear()
        return left


def start_router(ns: str, args: Sequence[str], data_dir: Path, log_path: Path, *,
                 command: Sequence[str] | None = None, new_session: bool = False,
                 cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """``meshrouter launch peer ARGS`` (or ``command`` + ARGS) inside ``ns``, its output
    in ``log_path``; the stale ``addresses.json`` of a previous run is removed first."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "addresses.json").unlink(missing_ok=True)
    program = list(command or [sys.executable, "-m", "meshrouter.cli"])
    argv = ["ip", "netns", "exec", ns, *program, "launch", "peer", "--data-dir", str(data_dir),
            *args]
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=new_session, cwd=cwd)


def wait_published(process: subprocess.Popen[bytes], data_dir: Path, log_path: Path,
                   timeout: float = 30) -> dict[str, Any]:
    """Until the router wrote its bound addresses (it is serving): that record.
    ``DemoError`` with the log's tail if it exits or takes longer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DemoError(f"the router exited:\n{_tail(log_path)}")
        try:
            record = json.loads((data_dir / "addresses.json").read_text())
        except (OSError, ValueError):
            record = {}
        if isinstance(record, dict) and record.get("pid") == process.pid:
            return record
        time.sleep(0.1)
    raise DemoError(f"the router did not start within {timeout:g} s:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_pidfiles(base: Path) -> list[Path]:
    """The pidfiles of one run: routers, the OVS daemons under their data dirs (a
    router's, or an ``OvsDatapath``'s own in a host directory), and the demo's
    API forwarder."""
    return [*base.glob("h*/router.pid"), *base.glob("h*/router/ovs/run/*.pid"),
            *base.glob("h*/ovs/run/*.pid"), base / "forward.pid"]


def remove_run(base: Path, prefix: str) -> list[str]:
    """Remove one run (ours now, or a dead one's leftovers) by its pidfiles and its
    name prefix; never raises.  Returns what is left (should be nothing)."""
    left: list[str] = []
    try:
        ours = [ns for ns in netns_list() if ns.startswith(prefix)]
        pids = procs.pids_from_files(run_pidfiles(base), str(base))
        for ns in ours:
            pids += [p for p in procs.netns_pids(ns) if p not in pids and p != os.getpid()]
        left += [f"process {p}" for p in procs.end(pids)]
        for ns in ours:
            sh("ip", "netns", "del", ns, check=False)
            shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
        for etc in NETNS_ETC.glob(f"{prefix}*"):
            shutil.rmtree(etc, ignore_errors=True)
        left += [f"namespace {ns}" for ns in netns_list() if ns.startswith(prefix)]
    except DemoError as exc:
        left.append(str(exc))
    shutil.rmtree(base, ignore_errors=True)
    if base.exists():
        left.append(f"directory {base}")
    return left


"""The namespace lab: "hosts" as network namespaces on a private underlay bridge.

Layout (as ovs-lab/NOTES.md, with unique names so parallel runs never collide):

* ``<p>ul``: a namespace holding the Linux bridge ``br-ul`` (the underlay switch);
* ``<p>h<N>``: one namespace per host, with ``ul0`` (a veth whose peer is on
  ``br-ul``) holding the host's underlay address 192.168.<net>.<N>/24; each host
  runs its own ovsdb-server + ovs-vswitchd (started by ``OvsDatapath`` itself,
  inside the host's namespace, under ``<base>/<host>/ovs``);
* ``<p>c<N><x>``: container namespaces.

Everything is created inside namespaces the lab owns; the root namespace is never
touched.  ``Lab.close()`` removes everything, and is called by the fixture's
finalizer even when a test fails: it stops only daemons whose pidfiles are under
the lab's own directory (and whose command line names it), deletes the lab's
namespaces and its directory.

``block(a, b)`` drops underlay traffic between two hosts with a ``bridge`` family
nft rule on ``br-ul`` (NOTES P4: an inet rule in the host would not see OVS's
AF_PACKET output).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meshrouter.dataplane.ovs import OvsSettings

REPO = Path(__file__).resolve().parents[2]


def sh(*argv: str, check: bool = True, timeout: float = 30) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result.stdout


def lab_skip_reason() -> str | None:
    """Why the lab cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "the namespace lab needs root"
    for tool in ("ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovs-ofctl", "ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install openvswitch-switch nftables)"
    return None


@dataclass
class Host:
    lab: Lab
    index: int
    ns: str
    ip: str
    base: Path
    containers: list[Container] = field(default_factory=list)

    def settings(self, **overrides: object) -> OvsSettings:
        """The OvsDatapath settings of this host: production code, own daemons in our netns."""
        values: dict[str, object] = {
            "data_dir": self.base,
            "own_daemons": "always",
            "datapath_type": "netdev",
            "underlay_dev": "ul0",
            "netns": self.ns,
            "probe_interval": 0.2,
            "verify_interval": 1.0,
            "port_pool": 0,  # the ordinary attach path; tests of the pool ask for one
        }
        values.update(overrides)
        return OvsSettings(**values)  # type: ignore[arg-type]

    def env(self) -> dict[str, str]:
        run = self.base / "ovs" / "run"
        return {**os.environ, "OVS_RUNDIR": str(run)}

    def ovs(self, *argv: str, check: bool = True) -> str:
        """An OVS tool against this host's daemons (unix sockets: no netns needed)."""
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env(),
                                timeout=30, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {result.stderr.strip()}")
        return result.stdout

    def exec(self, *argv: str, check: bool = True, timeout: float = 30) -> str:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check, timeout=timeout)

    def pid(self, daemon: str, data_dir: Path | None = None) -> int | None:
        """PID of one of this host's OVS daemons (under ``data_dir``, default the host's)."""
        run = (data_dir or self.base) / "ovs" / "run"
        try:
            return int((run / f"{daemon}.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def launch_router(self, *peers: str, extra: Sequence[str] = ()) -> RouterInHost:
        """``meshrouter launch peer`` inside this host's namespace, as a user would
        start it there: mesh on the host's underlay address, API on the host's own
        loopback (reachable only from inside: use ``RouterInHost.cli``)."""
        data_dir = self.base / "router"
        data_dir.mkdir(exist_ok=True)
        (data_dir / "addresses.json").unlink(missing_ok=True)
        log_path = self.base / f"router-{len(self.lab.routers)}.log"
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "meshrouter.cli",
                "launch", "peer", "--listen", f"{self.ip}:6783", "--api", "127.0.0.1:0",
                "--data-dir", str(data_dir), "--nickname", f"h{self.index}", *extra, *peers]
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        router = RouterInHost(self, process, data_dir, log_path)
        self.lab.routers.append(router)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"router in {self.ns} exited:\n{router.log()}")
            try:
                record = json.loads((data_dir / "addresses.json").read_text())
            except (OSError, ValueError):
                record = {}
            if record.get("pid") == process.pid:
                router.api = str(record["api"])
                return router
            time.sleep(0.1)
        raise RuntimeError(f"router in {self.ns} did not publish its addresses:\n{router.log()}")


@dataclass
class RouterInHost:
    """A ``meshrouter launch peer`` process running inside a host namespace."""

    host: Host
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    api: str = ""

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """A client verb run inside the host (where the API's loopback is)."""
        return sh("ip", "netns", "exec", self.host.ns, sys.executable, "-m", "meshrouter.cli",
                  "--api", self.api, *args, check=check, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal our process (by PID) and wait; SIGKILL if it does not go."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        return self.process.returncode


@dataclass
class Container:
    host: Host
    name: str
    ns: str
    ip: str
    mac: str

    def exec(self, *argv: str, check: bool = True, timeout: float = 60) -> str:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check, timeout=timeout)

    def ping(self, other: Container, count: int = 1, wait: float = 1) -> bool:
        result = subprocess.run(
            ["ip", "netns", "exec", self.ns, "ping", "-c", str(count), "-i", "0.2",
             "-W", str(wait), other.ip],
            capture_output=True, timeout=count * wait + 10, check=False,
        )
        return result.returncode == 0


class Lab:
    """A set of host namespaces on one underlay bridge; see the module docstring."""

    def __init__(self, subnet: int = 77) -> None:
        self.prefix = "mr" + uuid.uuid4().hex[:5]
        self.base = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-", dir="/tmp"))
        self.subnet = subnet
        self.namespaces: list[str] = []
        self.hosts: list[Host] = []
        self.routers: list[RouterInHost] = []
        self.ul = f"{self.prefix}ul"
        self._netns_add(self.ul)
        sh("ip", "-n", self.ul, "link", "add", "br-ul", "type", "bridge")
        sh("ip", "-n", self.ul, "link", "set", "br-ul", "up")

    def _netns_add(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1")

    def add_host(self, mtu: int = 1500) -> Host:
        index = len(self.hosts) + 1
        ns = f"{self.prefix}h{index}"
        self._netns_add(ns)
        peer = f"h{index}-ul"
        sh("ip", "link", "add", "ul0", "netns", ns, "mtu", str(mtu), "type", "veth",
           "peer", "name", peer, "netns", self.ul, "mtu", str(mtu))
        sh("ip", "-n", self.ul, "link", "set", peer, "master", "br-ul", "up")
        ip = f"192.168.{self.subnet}.{index}"
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "ul0")
        sh("ip", "-n", ns, "link", "set", "ul0", "up")
        host = Host(self, index, ns, ip, self.base / f"h{index}")
        host.base.mkdir()
        self.hosts.append(host)
        return host

    def add_container(self, host: Host) -> Container:
        i = len(host.containers)
        if i > 200:
            raise ValueError("at most 200 containers per lab host")
        name = f"c{host.index}{chr(97 + i)}" if i < 26 else f"c{host.index}n{i}"
        ns = f"{self.prefix}{name}"
        self._netns_add(ns)
        n = len(host.containers) + 2
        container = Container(host, name, ns, f"10.{self.subnet}.{host.index}.{n}",
                              f"02:{self.subnet:02x}:00:00:{host.index:02x}:{n:02x}")
        host.containers.append(container)
        return container

    def forget_namespace(self, name: str) -> None:
        """Delete a namespace now (a container dying under the router)."""
        sh("ip", "netns", "del", name)
        self.namespaces.remove(name)

    # -- underlay faults --------------------------------------------------------------

    def block(self, a: Host, b: Host) -> None:
        """Drop all underlay frames between ``a`` and ``b`` (both ways)."""
        table = f"{self.prefix}blk"
        rules = (
            f"table bridge {table} {{\n"
            f"  chain fw{a.index}{b.index} {{\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"    ip saddr {a.ip} ip daddr {b.ip} counter drop\n"
            f"    ip saddr {b.ip} ip daddr {a.ip} counter drop\n"
            "  }\n}\n"
        )
        subprocess.run(["ip", "netns", "exec", self.ul, "nft", "-f", "-"], input=rules,
                       text=True, check=True, capture_output=True, timeout=30)

    def unblock(self, a: Host, b: Host) -> None:
        sh("ip", "netns", "exec", self.ul, "nft", "delete", "chain", "bridge",
           f"{self.prefix}blk", f"fw{a.index}{b.index}", check=False)

    # -- cleanup -------------------------------------------------------------------------

    def our_pids(self) -> list[int]:
        """PIDs from pidfiles under our directory whose command line names it."""
        pids = []
        for pidfile in [*self.base.glob("*/ovs/run/*.pid"), *self.base.glob("*/*/ovs/run/*.pid")]:
            try:
                pid = int(pidfile.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except (OSError, ValueError):
                continue
            if str(self.base) in cmdline:
                pids.append(pid)
        return pids

    def close(self) -> None:
        for router in self.routers:  # first: a router stops its own OVS daemons
            router.stop()
        pids = self.our_pids()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.05)
        for name in reversed(self.namespaces):
            sh("ip", "netns", "del", name, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.base, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """Our namespaces or daemons still present (should be empty after close)."""
        listed = sh("ip", "netns", "list", check=False)
        left = [line.split()[0] for line in listed.splitlines()
                if line.startswith(self.prefix)]
        routers = [f"router {r.process.pid}" for r in self.routers if r.process.poll() is None]
        return left + [str(p) for p in self.our_pids()] + routers


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def names(items: Sequence[Container]) -> list[str]:
    return [c.name for c in items]


def tcp_transfer(src: Container, dst: Container, size: int) -> tuple[str, str]:
    """(what the sender sent, what the receiver got): ``<bytes> <sha256>`` each."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", dst.ns, sys.executable, "-m", "tests.integration.tcpcheck",
         "serve", dst.ip, "5201"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "listening"
        sent = src.exec(sys.executable, "-m", "tests.integration.tcpcheck", "send", dst.ip,
                        "5201", str(size), timeout=90)
        got, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return sent.strip(), got.strip()

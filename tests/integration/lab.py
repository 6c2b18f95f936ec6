"""The namespace lab of the tests and benches: ``meshrouter.demo.netlab`` with test helpers.

The namespaces, the underlay, blocking and the cleanup are the demo's own code
(``netlab.NetLab``: one implementation), so the lab the tests trust is the
one users run.  What is added here: names under a unique prefix ``mr<hex>``
and a temporary run directory (parallel runs never collide), containers with
fixed addresses ``10.<net>.<host>.<n>`` and MACs, ``OvsSettings`` for an
``OvsDatapath`` in a host (its own daemons under ``<base>/h<N>/ovs``), routers
launched in a host as a user would, and a TCP transfer check.

``Lab.close()`` is called by the fixture's finalizer even when a test fails:
routers first (each stops its own OVS), then ``netlab.remove_run`` (our
pidfiles' processes, anything inside our namespaces, the namespaces, the
directory).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from meshrouter.dataplane.ovs import OvsSettings
from meshrouter.demo.netlab import NetLab, start_router, wait_published
from meshrouter.errors import DemoError

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

    def launch_router(self, *peers: str, extra: Sequence[str] = (),
                      command: Sequence[str] | None = None) -> RouterInHost:
        """``meshrouter launch peer`` inside this host's namespace, as a user would
        start it there: mesh on the host's underlay address, API on the host's own
        loopback (reachable only from inside: use ``RouterInHost.cli``).
        ``command`` replaces ``python -m meshrouter.cli`` (e.g. a launcher script)."""
        data_dir = self.base / "router"
        log_path = self.base / f"router-{len(self.lab.routers)}.log"
        args = ["--listen", f"{self.ip}:6783", "--api", "127.0.0.1:0",
                "--nickname", f"h{self.index}", *extra, *peers]
        process = start_router(self.ns, args, data_dir, log_path, command=command, cwd=REPO)
        router = RouterInHost(self, process, data_dir, log_path)
        self.lab.routers.append(router)
        try:
            record = wait_published(process, data_dir, log_path)
        except DemoError as exc:
            raise RuntimeError(f"router in {self.ns}: {exc}") from None
        router.api = str(record["api"])
        return router


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


class Lab(NetLab):
    """``NetLab`` with test containers and routers; see the module docstring."""

    def __init__(self, subnet: int = 77) -> None:
        prefix = "mr" + uuid.uuid4().hex[:5]
        base = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir="/tmp"))
        super().__init__(prefix, base, f"192.168.{subnet}")
        self.subnet = subnet
        self.hosts: list[Host] = []
        self.routers: list[RouterInHost] = []
        self.add_underlay()

    def add_host(self, mtu: int = 1500) -> Host:
        index = len(self.hosts) + 1
        ns, ip = self.host_netns(index, mtu)
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
        self.netns_add(ns)
        n = len(host.containers) + 2
        container = Container(host, name, ns, f"10.{self.subnet}.{host.index}.{n}",
                              f"02:{self.subnet:02x}:00:00:{host.index:02x}:{n:02x}")
        host.containers.append(container)
        return container

    def close(self) -> None:
        for router in self.routers:  # first: a router stops its own OVS daemons
            router.stop()
        self.remove()

    def leftovers(self) -> list[str]:
        """Our namespaces or daemons still present (should be empty after close)."""
        listed = sh("ip", "netns", "list", check=False)
        left = [line.split()[0] for line in listed.splitlines()
                if line.startswith(self.prefix)]
        routers = [f"router {r.process.pid}" for r in self.routers if r.process.poll() is None]
        return left + [str(p) for p in self.our_pids()] + routers


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

"""The demo's lab: the namespace lab (``netlab.py``) with routers, DNS and a forwarder.

Every name is under the run's prefix ``mrdemo-<id>-``; hosts hold
192.168.150.N/24 and run ``meshrouter launch peer`` with ``--datapath ovs
--datapath-type netdev --underlay-dev ul0``, so each router starts its own
ovsdb-server/ovs-vswitchd under its data directory; containers are attached
with ``meshrouter attach`` and resolve through their host router's DNS.

Every process and file lives under the run directory ``<state>/<id>/``, whose
``demo.pid`` names the demo process that owns it: ``sweep.py`` finds the
leftovers of a run whose owner died (kill -9) and removes them.  ``close()``
stops the routers first (each stops its own OVS), then ``netlab.remove_run``
removes the rest.  It never raises, so it is safe in ``finally``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from meshrouter.demo.netlab import NETNS_ETC, NetLab, remove_run, start_router, wait_published
from meshrouter.demo.procs import sh
from meshrouter.errors import DemoError

NAME_PREFIX = "mrdemo-"
"""Every namespace of every demo run starts with this (and nothing else does)."""
UNDERLAY_NET = "192.168.150"
OVERLAY_RANGE = "10.40.0.0/16"
DOMAIN = "mesh.local"
API = "127.0.0.1:6784"
"""Each router's API, on its host namespace's own loopback."""
OWNER_FILE = "demo.pid"


@dataclass
class Router:
    """A ``meshrouter launch peer`` process inside a host namespace."""

    host: Host
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Host:
    lab: Lab
    index: int
    ns: str
    ip: str
    base: Path
    router: Router | None = None
    dns_ip: str | None = None
    """The host's own overlay address (``meshrouter expose``), where its router's
    DNS server answers this host's containers."""
    containers: list[Container] = field(default_factory=list)

    @property
    def nickname(self) -> str:
        return f"h{self.index}"

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """A meshrouter client verb run inside this host (where its API is)."""
        return sh("ip", "netns", "exec", self.ns, "env", f"COLUMNS={self.lab.columns}",
                  sys.executable, "-m", "meshrouter.cli", "--api", API, *args,
                  check=check, timeout=timeout)

    def cli_json(self, *args: str) -> object:
        text = self.cli(*args, "--json")
        try:
            return json.loads(text)
        except ValueError:
            raise DemoError(f"meshrouter {' '.join(args)} on {self.nickname} printed "
                            f"no JSON: {text[:200]!r}") from None


@dataclass
class Container:
    host: Host
    name: str
    ns: str
    ip: str = ""
    mac: str = ""

    def exec(self, *argv: str, check: bool = True, timeout: float = 30) -> str:
        return sh("ip", "netns", "exec", self.ns, *argv, check=check, timeout=timeout)

    def ping(self, target: str, wait: float = 1.0) -> bool:
        """One ping to ``target`` (a name: resolved by the host router's DNS)."""
        try:
            result = subprocess.run(
                ["ip", "netns", "exec", self.ns, "ping", "-c", "1", "-W", f"{wait:g}", target],
                capture_output=True, timeout=wait + 10, check=False)
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0


class Lab(NetLab):
    """One demo run's hosts, routers and containers; see the module docstring."""

    def __init__(self, state_dir: Path) -> None:
        self.run_id = uuid.uuid4().hex[:6]
        base = state_dir / self.run_id
        if len(str(base)) > 40:
            # OVS's unix sockets live under <base>/h<N>/router/ovs/run (capped length)
            raise DemoError(f"state directory {state_dir} is too long for OVS's unix "
                            "sockets; use a shorter --state-dir")
        super().__init__(f"{NAME_PREFIX}{self.run_id}-", base, UNDERLAY_NET)
        self.base.mkdir(parents=True, mode=0o700)
        (self.base / OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.hosts: list[Host] = []
        self.columns = 100
        self.forwarder: subprocess.Popen[bytes] | None = None
        self.forward_port: int | None = None
        """Width the client verbs draw their tables for (the demo's terminal)."""

    # -- building ---------------------------------------------------------------------

    def add_host(self) -> Host:
        index = len(self.hosts) + 1
        ns, ip = self.host_netns(index)
        host = Host(self, index, ns, ip, self.base / f"h{index}")
        host.base.mkdir()
        self.hosts.append(host)
        return host

    def start_router(self, host: Host, peers: list[str]) -> Router:
        """``meshrouter launch peer`` in ``host``'s namespace, in its own session
        (a Ctrl-C at the terminal reaches the demo, which stops routers in order)."""
        data_dir = host.base / "router"
        log_path = host.base / "router.log"
        args = ["--listen", f"{host.ip}:6783", "--api", API, "--nickname", host.nickname,
                "--datapath", "ovs", "--datapath-type", "netdev", "--underlay-dev", "ul0",
                "--ovs-db", str(data_dir / "ovs" / "run" / "db.sock"),
                "--ipalloc-range", OVERLAY_RANGE, "--dns-domain", f"{DOMAIN}.",
                "--heartbeat-interval", "0.5", "--heartbeat-timeout", "2", *peers]
        process = start_router(host.ns, args, data_dir, log_path, new_session=True)
        (host.base / "router.pid").write_text(f"{process.pid}\n")
        host.router = Router(host, process, data_dir, log_path)
        return host.router

    def wait_router(self, host: Host, timeout: float = 30) -> None:
        """Until the router published its bound addresses (it is serving)."""
        router = host.router
        assert router is not None
        try:
            wait_published(router.process, router.data_dir, router.log_path, timeout)
        except DemoError as exc:
            raise DemoError(f"{host.nickname}: {exc}") from None

    def add_container(self, host: Host, name: str) -> Container:
        """A namespace whose resolver is the host router's DNS (``ip netns exec``
        bind-mounts ``/etc/netns/<ns>/resolv.conf``); attached separately."""
        if host.dns_ip is None:
            raise DemoError(f"{host.nickname} has no overlay address for its DNS yet")
        ns = f"{self.prefix}{name}"
        self.netns_add(ns)
        etc = NETNS_ETC / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(
            f"# meshrouter demo: the DNS server of {host.nickname}'s router\n"
            f"nameserver {host.dns_ip}\nsearch {DOMAIN}\noptions timeout:1 attempts:3\n")
        container = Container(host, name, ns)
        host.containers.append(container)
        return container

    def attach(self, host: Host, container_id: str, netns: str,
               name: str | None = None) -> tuple[str, str]:
        """``meshrouter attach`` on ``host``: (ip, mac) from IPAM."""
        extra = ["--name", name] if name else []
        out = host.cli_json("attach", container_id, netns, *extra)
        if not isinstance(out, dict) or "ip" not in out:
            raise DemoError(f"attach {container_id} answered {out!r}")
        return str(out["ip"]).split("/")[0], str(out.get("mac", ""))

    def start_forwarder(self, host: Host) -> int:
        """A port on 127.0.0.1 *here* (the root namespace) that reaches ``host``'s
        API, for a browser (``forward.py``); returns the port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(16)
            port = int(listener.getsockname()[1])
            fd = listener.fileno()
            argv = ["ip", "netns", "exec", host.ns, sys.executable, "-m",
                    "meshrouter.demo.forward", "--fd", str(fd), "--to", API,
                    "--run", str(self.base)]
            with (self.base / "forward.log").open("wb") as log:
                process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, pass_fds=(fd,),
                                           start_new_session=True)
        finally:
            listener.close()
        (self.base / "forward.pid").write_text(f"{process.pid}\n")
        self.forwarder = process
        self.forward_port = port
        return port

    # -- teardown -------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Remove everything this run made; returns what could not be removed."""
        for host in self.hosts:  # routers first: each stops its own OVS daemons
            if host.router is not None and host.router.process.poll() is None:
                try:
                    os.kill(host.router.process.pid, 15)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 25
        for host in self.hosts:
            if host.router is not None:
                try:
                    host.router.process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    host.router.process.kill()
                    host.router.process.wait(timeout=5)
        return remove_run(self.base, self.prefix)


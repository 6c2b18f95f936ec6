"""The demo's lab: test hosts as network namespaces on a private underlay.

Layout (as /work/shared/ovs-lab/NOTES.md, every name under the run's prefix
``mrdemo-<id>-``, so runs never collide and leftovers are recognisable):

* ``<p>ul``: holds the Linux bridge ``br-ul``, the underlay switch;
* ``<p>h<N>``: one per host, with ``ul0`` (a veth whose peer sits on ``br-ul``)
  holding 192.168.150.N/24.  ``meshrouter launch peer`` runs inside it with
  ``--datapath ovs --datapath-type netdev --underlay-dev ul0``, so each router
  starts its own ovsdb-server/ovs-vswitchd under its data directory;
* ``<p><container>``: one per container, attached with ``meshrouter attach``.

Every process and file lives under the run directory ``<state>/<id>/``, whose
``demo.pid`` names the demo process that owns it: ``sweep.py`` finds the
leftovers of a run whose owner died (kill -9) and removes them.  ``close()``
removes everything: routers first (each stops its own OVS), then whatever our
pidfiles or our namespaces still hold, the namespaces, their ``/etc/netns``
entries and the run directory.  It never raises, so it is safe in ``finally``.

The root namespace is never touched: links are created directly inside our
namespaces, and all traffic stays on ``br-ul``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from meshrouter.demo import procs
from meshrouter.demo.procs import sh
from meshrouter.errors import DemoError

NAME_PREFIX = "mrdemo-"
"""Every namespace of every demo run starts with this (and nothing else does)."""
UNDERLAY_NET = "192.168.150"
OVERLAY_RANGE = "10.40.0.0/16"
DOMAIN = "mesh.local"
API = "127.0.0.1:6784"
"""Each router's API, on its host namespace's own loopback."""
NETNS_ETC = Path("/etc/netns")
OWNER_FILE = "demo.pid"


def netns_list() -> list[str]:
    return [line.split()[0] for line in sh("ip", "netns", "list", check=False).splitlines()
            if line.strip()]


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
    """The host's own overlay address (attached as container ``dns-h<N>``), where
    its router's DNS server answers this host's containers."""
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


class Lab:
    """One demo run's hosts, routers and containers; see the module docstring."""

    def __init__(self, state_dir: Path) -> None:
        self.run_id = uuid.uuid4().hex[:6]
        self.prefix = f"{NAME_PREFIX}{self.run_id}-"
        self.base = state_dir / self.run_id
        if len(str(self.base)) > 40:
            # OVS's unix sockets live under <base>/h<N>/router/ovs/run (capped length)
            raise DemoError(f"state directory {state_dir} is too long for OVS's unix "
                            "sockets; use a shorter --state-dir")
        self.base.mkdir(parents=True, mode=0o700)
        (self.base / OWNER_FILE).write_text(f"{os.getpid()}\n")
        self.namespaces: list[str] = []
        self.hosts: list[Host] = []
        self.blocked: set[tuple[int, int]] = set()
        self.columns = 100
        self.forwarder: subprocess.Popen[bytes] | None = None
        self.forward_port: int | None = None
        """Width the client verbs draw their tables for (the demo's terminal)."""
        self.ul = f"{self.prefix}ul"

    # -- building ---------------------------------------------------------------------

    def add_underlay(self) -> None:
        """The underlay switch; made apart from ``__init__`` so that a Ctrl-C at any
        point after the run directory exists finds a ``Lab`` to close."""
        self._netns_add(self.ul)
        sh("ip", "-n", self.ul, "link", "add", "br-ul", "type", "bridge")
        sh("ip", "-n", self.ul, "link", "set", "br-ul", "up")

    def _netns_add(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        # IPv6 off: no MLD/RS noise in the flows (NOTES section 1)
        sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1")

    def add_host(self) -> Host:
        index = len(self.hosts) + 1
        ns = f"{self.prefix}h{index}"
        self._netns_add(ns)
        peer = f"h{index}-ul"
        sh("ip", "link", "add", "ul0", "netns", ns, "type", "veth",
           "peer", "name", peer, "netns", self.ul)
        sh("ip", "-n", self.ul, "link", "set", peer, "master", "br-ul", "up")
        ip = f"{UNDERLAY_NET}.{index}"
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "ul0")
        sh("ip", "-n", ns, "link", "set", "ul0", "up")
        host = Host(self, index, ns, ip, self.base / f"h{index}")
        host.base.mkdir()
        self.hosts.append(host)
        return host

    def start_router(self, host: Host, peers: list[str]) -> Router:
        """``meshrouter launch peer`` in ``host``'s namespace, in its own session
        (a Ctrl-C at the terminal reaches the demo, which stops routers in order)."""
        data_dir = host.base / "router"
        data_dir.mkdir(exist_ok=True)
        log_path = host.base / "router.log"
        argv = ["ip", "netns", "exec", host.ns, sys.executable, "-m", "meshrouter.cli",
                "launch", "peer", "--listen", f"{host.ip}:6783", "--api", API,
                "--data-dir", str(data_dir), "--nickname", host.nickname,
                "--datapath", "ovs", "--datapath-type", "netdev", "--underlay-dev", "ul0",
                "--ovs-db", str(data_dir / "ovs" / "run" / "db.sock"),
                "--ipalloc-range", OVERLAY_RANGE, "--dns-domain", f"{DOMAIN}.",
                "--heartbeat-interval", "0.5",
                "--heartbeat-timeout", "2", *peers]
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        (host.base / "router.pid").write_text(f"{process.pid}\n")
        host.router = Router(host, process, data_dir, log_path)
        return host.router

    def wait_router(self, host: Host, timeout: float = 30) -> None:
        """Until the router published its bound addresses (it is serving)."""
        router = host.router
        assert router is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if router.process.poll() is not None:
                raise DemoError(f"the router of {host.nickname} exited:\n{router.log_tail()}")
            try:
                record = json.loads((router.data_dir / "addresses.json").read_text())
            except (OSError, ValueError):
                record = {}
            if record.get("pid") == router.process.pid:
                return
            time.sleep(0.1)
        raise DemoError(f"the router of {host.nickname} did not start within {timeout:g} s:\n"
                        f"{router.log_tail()}")

    def add_container(self, host: Host, name: str) -> Container:
        """A namespace whose resolver is the host router's DNS (``ip netns exec``
        bind-mounts ``/etc/netns/<ns>/resolv.conf``); attached separately."""
        if host.dns_ip is None:
            raise DemoError(f"{host.nickname} has no overlay address for its DNS yet")
        ns = f"{self.prefix}{name}"
        self._netns_add(ns)
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

    # -- underlay faults ------------------------------------------------------------------

    def block(self, a: Host, b: Host) -> None:
        """Drop underlay frames between ``a`` and ``b`` on the bridge (NOTES P4: a
        rule in the host would not see OVS's AF_PACKET output)."""
        rules = (
            f"table bridge mrdemo {{\n"
            f"  chain cut{a.index}{b.index} {{\n"
            "    type filter hook forward priority 0; policy accept;\n"
            f"    ip saddr {a.ip} ip daddr {b.ip} counter drop\n"
            f"    ip saddr {b.ip} ip daddr {a.ip} counter drop\n"
            "  }\n}\n"
        )
        sh("ip", "netns", "exec", self.ul, "nft", "-f", "-", input_text=rules)
        self.blocked.add((a.index, b.index))

    def unblock(self, a: Host, b: Host) -> None:
        sh("ip", "netns", "exec", self.ul, "nft", "delete", "chain", "bridge", "mrdemo",
           f"cut{a.index}{b.index}")
        self.blocked.discard((a.index, b.index))

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


def run_pidfiles(base: Path) -> list[Path]:
    """The pidfiles of one run: routers, the OVS daemons under their data dirs, and
    the API forwarder."""
    return [*base.glob("h*/router.pid"), *base.glob("h*/router/ovs/run/*.pid"),
            base / "forward.pid"]


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

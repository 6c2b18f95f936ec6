"""Driving ``meshrouter-cni`` as runtimes do, in the namespace lab: shared by the
conformance test (``test_lab.py``), the podman test (``test_podman.py``) and
``bench/cni.py``.

* ``cni``/``start_plugin``/``finish``: the plugin started in a lab host's network
  namespace with the ``CNI_*`` environment, the configuration on stdin, its JSON
  read from stdout and its exit status returned.
* ``Podman``: podman 4.3 (CNI network backend) run in a lab host: the host's
  network namespace (``nsenter --net``, so the namespace podman bind-mounts under
  /run/netns is visible to the router, whose mount namespace is a slave of ours;
  ``ip netns exec`` would give podman a private one), its own storage under the
  lab directory, ``containers.conf`` naming our plugin and network directories,
  runc (crun refuses this machine's hybrid cgroups) and explicit ulimits (the
  defaults exceed the sandbox's).  The image is busybox-static imported with
  ``podman import``: no registry.
* ``open_lab``: a lab that is closed, and checked to leave nothing behind, even
  when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from meshrouter.cni.install import install
from tests.integration.lab import REPO, Container, Host, Lab, RouterInHost, lab_skip_reason

RANGE = "10.78.0.0/16"
DOMAIN = "mesh.local"


@contextmanager
def open_lab(subnet: int, skip_reason: str | None) -> Iterator[Lab]:
    """A fresh lab (the test is skipped with ``skip_reason`` when there is one)."""
    if skip_reason is not None:
        pytest.skip(skip_reason)
    made = Lab(subnet=subnet)
    try:
        yield made
    finally:
        made.close()
        left = made.leftovers()
        assert not left, f"the lab left {left} behind"


def router_args(h: Host, dns_listen: bool = True, quick_failure: bool = True) -> list[str]:
    """A router with its own OVS in host ``h``; DNS on the host's underlay address
    (``dns_listen=False``: the router's default DNS address).  ``quick_failure``: a
    link is declared dead after 2 s of silence (tests that stop a router); a bench
    keeps the defaults, which a loaded machine does not trip."""
    args = ["--datapath", "ovs", "--datapath-type", "netdev", "--underlay-dev", "ul0",
            "--ovs-daemons", "own", "--port-io", "afpacket",
            "--ovs-db", str(h.base / "router" / "ovs" / "run" / "db.sock"),
            "--ipalloc-range", RANGE]
    if quick_failure:
        args += ["--heartbeat-interval", "0.5", "--heartbeat-timeout", "2"]
    return args + (["--dns-listen", f"{h.ip}:53"] if dns_listen else [])


def two_hosts(lab: Lab, dns_listen: bool = True,
              ) -> tuple[Host, Host, RouterInHost, RouterInHost]:
    h1, h2 = lab.add_host(), lab.add_host()
    r1 = h1.launch_router(extra=router_args(h1, dns_listen))
    r2 = h2.launch_router(f"{h1.ip}:6783", extra=router_args(h2, dns_listen))
    return h1, h2, r1, r2


def conf(router: RouterInHost, **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "meshlab", "type": "meshrouter-cni",
            "addressFile": str(router.data_dir / "addresses.json"), **extra}


def cni_env(command: str, container: Container | None, cid: str, args: str) -> list[str]:
    env = [f"CNI_COMMAND={command}", "CNI_IFNAME=eth0", "CNI_PATH=/opt/cni/bin",
           f"CNI_ARGS={args}"]
    if container is not None:
        env += [f"CNI_CONTAINERID={cid}", f"CNI_NETNS=/run/netns/{container.ns}"]
    return env


def start_plugin(host: Host, command: str, config: dict[str, Any],
                 container: Container | None = None, cid: str = "",
                 args: str = "") -> subprocess.Popen[str]:
    """The plugin as a runtime starts it: in the host's namespace, env + stdin."""
    argv = ["ip", "netns", "exec", host.ns, "env", "-i", "PATH=/usr/bin:/bin",
            *cni_env(command, container, cid or (container.name if container else ""), args),
            sys.executable, "-m", "meshrouter.cni.plugin"]
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdin is not None
    process.stdin.write(json.dumps(config))
    process.stdin.close()
    return process


def finish(process: subprocess.Popen[str]) -> tuple[int, Any]:
    assert process.stdout is not None
    out = process.stdout.read()
    code = process.wait(timeout=120)
    return code, json.loads(out) if out.strip() else None


def cni(host: Host, command: str, config: dict[str, Any], container: Container | None = None,
        cid: str = "", args: str = "") -> tuple[int, Any]:
    return finish(start_plugin(host, command, config, container, cid, args))


def learn(container: Container, result: dict[str, Any]) -> None:
    container.ip = result["ips"][0]["address"].split("/")[0]


def podman_skip_reason() -> str | None:
    reason = lab_skip_reason()
    if reason is not None:
        return reason
    for tool, package in (("podman", "podman"), ("runc", "runc"), ("busybox", "busybox-static"),
                          ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    return None


class Podman:
    """podman in lab host ``host`` with the network ``meshlab`` (see the module doc)."""

    RUN = ("--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")

    def __init__(self, host: Host, base: Path, address_file: Path) -> None:
        self.host = host
        self.base = base
        (base / "net.d").mkdir(parents=True)
        install(base / "bin", None, None, interpreter=installed_interpreter())
        conflist = {"cniVersion": "1.0.0", "name": "meshlab", "plugins": [
            {"type": "meshrouter-cni", "addressFile": str(address_file)}]}
        (base / "net.d" / "meshlab.conflist").write_text(json.dumps(conflist))
        (base / "containers.conf").write_text(
            f'[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["{base}/bin"]\n'
            f'network_config_dir = "{base}/net.d"\n[engine]\nruntime = "runc"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(base / "containers.conf")}
        self.argv = ["nsenter", f"--net=/run/netns/{host.ns}", "podman",
                     "--root", str(base / "root"), "--runroot", str(base / "run"),
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        result = subprocess.run([*self.argv, *args], env=self.env, capture_output=True,
                                text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """podman with its stdout as a pipe (line-buffered text)."""
        return subprocess.Popen([*self.argv, *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                text=True, bufsize=1)

    def import_busybox(self) -> None:
        rootfs = self.base / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
        for tool in ("sh", "ping", "sleep", "ip", "cat", "nslookup", "grep", "echo"):
            os.symlink("busybox", rootfs / "bin" / tool)
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(self.base / "rootfs.tar"), "."],
                       check=True)
        self("import", str(self.base / "rootfs.tar"), "meshbusy")

    def run(self, name: str, network: str = "meshlab") -> None:
        self("run", "-d", "--name", name, *self.RUN, "--network", network, "meshbusy",
             "sleep", "600")

    def exec_ok(self, name: str, *argv: str) -> bool:
        done = subprocess.run([*self.argv, "exec", name, *argv], env=self.env,
                              capture_output=True, timeout=30, check=False)
        return done.returncode == 0

    def pings(self, name: str, target: str) -> bool:
        """One echo from container ``name`` to ``target`` (an address or a name)."""
        return self.exec_ok(name, "ping", "-c", "1", "-W", "1", target)

    def close(self) -> None:
        self("rm", "-af", "-t", "0", check=False)


def installed_interpreter() -> str:
    """What the installer writes in production (``/usr/bin/python3 -IS``) when that
    Python can load this one's bytecode; otherwise this Python, with the same flags."""
    system = "/usr/bin/python3"
    if os.path.exists(system):
        probe = subprocess.run([system, "-IS", "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=30, check=False)
        if probe.stdout.strip() == str(sys.version_info[:2]):
            return f"{system} -IS"
    return f"{sys.executable} -IS"


def endpoint(router_ps: str, name: str) -> dict[str, str] | None:
    return next((row for row in json.loads(router_ps) if row.get("name") == name), None)

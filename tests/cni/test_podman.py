"""A real runtime drives the plugin: podman 4.3 (CNI network backend) in a lab host.

Podman runs with the lab host's network namespace (``nsenter --net``, so the
namespace it bind-mounts under /run/netns is visible to the router, whose mount
namespace is a slave of ours; ``ip netns exec`` would give podman a private one),
its own storage under the lab directory, ``containers.conf`` naming our plugin
directory and network directory, runc (crun refuses this machine's hybrid cgroups)
and explicit ulimits (the defaults exceed the sandbox's).  The image is busybox-static
imported with ``podman import``: no registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshrouter.cni.install import install
from tests.cni.test_lab import cni, conf, learn, router_args, wait_for
from tests.integration.lab import Host, Lab, lab_skip_reason

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def podman_skip_reason() -> str | None:
    reason = lab_skip_reason()
    if reason is not None:
        return reason
    for tool, package in (("podman", "podman"), ("runc", "runc"), ("busybox", "busybox-static"),
                          ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    return None


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = podman_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    made = Lab(subnet=76)
    try:
        yield made
    finally:
        made.close()
        left = made.leftovers()
        assert not left, f"the lab left {left} behind"


class Podman:
    def __init__(self, host: Host, base: Path, address_file: Path) -> None:
        self.host = host
        self.base = base
        (base / "net.d").mkdir(parents=True)
        install(base / "bin", None, None, interpreter=f"{sys.executable} -IS")
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

    def __call__(self, *args: str, check: bool = True) -> str:
        result = subprocess.run([*self.argv, *args], env=self.env, capture_output=True,
                                text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def import_busybox(self) -> None:
        rootfs = self.base / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        shutil.copy(shutil.which("busybox") or "/bin/busybox", rootfs / "bin" / "busybox")
        for tool in ("sh", "ping", "sleep", "ip", "cat"):
            os.symlink("busybox", rootfs / "bin" / tool)
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(self.base / "rootfs.tar"), "."],
                       check=True)
        self("import", str(self.base / "rootfs.tar"), "meshbusy")

    def run(self, name: str) -> None:
        self("run", "-d", "--name", name, "--runtime", "runc",
             "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
             "--network", "meshlab", "meshbusy", "sleep", "600")

    def pings(self, name: str, ip: str) -> bool:
        done = subprocess.run([*self.argv, "exec", name, "ping", "-c", "1", "-W", "1", ip],
                              env=self.env, capture_output=True, timeout=30, check=False)
        return done.returncode == 0

    def close(self) -> None:
        self("rm", "-af", "-t", "0", check=False)


def endpoint(router_ps: str, name: str) -> dict[str, str] | None:
    return next((row for row in json.loads(router_ps) if row.get("name") == name), None)


def test_podman_run_gets_an_address_and_reaches_another_host(lab: Lab) -> None:
    h1, h2 = lab.add_host(), lab.add_host()
    r1 = h1.launch_router(extra=router_args(h1))
    r2 = h2.launch_router(f"{h1.ip}:6783", extra=router_args(h2))
    beta = lab.add_container(h2)
    status, result = cni(h2, "ADD", conf(r2), beta, args="K8S_POD_NAME=beta")
    assert status == 0, result
    learn(beta, result)
    podman = Podman(h1, lab.base / "podman", r1.data_dir / "addresses.json")
    try:
        podman.import_busybox()
        started = time.monotonic()
        podman.run("alpha")
        alpha = endpoint(r1.cli("ps", "--json"), "alpha")
        assert alpha is not None and alpha["ip"].startswith("10.78."), "address from IPAM"
        assert alpha["ip"] in podman("exec", "alpha", "ip", "addr", "show", "eth0")
        resolv = podman("exec", "alpha", "cat", "/etc/resolv.conf")
        assert f"nameserver {h1.ip}" in resolv and "mesh.local" in resolv
        wait_for(lambda: podman.pings("alpha", beta.ip), 60, "alpha to reach beta on h2")
        print(f"podman run -> first ping across hosts: {time.monotonic() - started:.2f} s")
        # by name: the mesh DNS answers beta's address (asked where the container's
        # resolv.conf points), and alpha reaches that address
        answer = h1.exec("busybox", "nslookup", "beta.mesh.local", h1.ip)
        assert beta.ip in answer, answer
        # podman rm releases the address
        cid = alpha["container_id"]
        assert alpha["ip"] in r1.cli("ipam", "lookup", cid)
        podman("rm", "-f", "-t", "0", "alpha")
        assert endpoint(r1.cli("ps", "--json"), "alpha") is None
        assert alpha["ip"] not in r1.cli("ipam", "lookup", cid, check=False)
    finally:
        podman.close()

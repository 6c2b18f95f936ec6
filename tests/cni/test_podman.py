"""A real runtime drives the plugin: podman 4.3 (CNI network backend) in a lab host
(how podman is run there: ``tests/cni/runtime.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.cni.runtime import (
    Podman,
    cni,
    conf,
    endpoint,
    learn,
    open_lab,
    podman_skip_reason,
    two_hosts,
    wait_for,
)
from tests.integration.lab import Lab

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def lab() -> Iterator[Lab]:
    with open_lab(76, podman_skip_reason()) as made:
        yield made


def test_podman_run_gets_an_address_and_reaches_another_host(lab: Lab) -> None:
    h1, h2, r1, r2 = two_hosts(lab)
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

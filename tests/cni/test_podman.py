"""A real runtime drives the plugin: podman 4.3 (CNI network backend) in a lab host
(how podman is run there: ``tests/cni/runtime.py``)."""

from __future__ import annotations

import json

import pytest

from tests.cni.runtime import DOMAIN, Podman, cni, conf, endpoint, learn, two_hosts
from tests.integration.lab import Lab, RouterInHost
from tests.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def nameserver(router: RouterInHost) -> str:
    """The address the router gives containers as their DNS server ('' = none yet)."""
    return str(json.loads(router.cli("status", "dns", "--json")).get("nameserver") or "")


def test_podman_run_gets_an_address_and_reaches_another_host_by_name(podman_lab: Lab) -> None:
    lab = podman_lab
    # Default DNS: each router exposes its host on the overlay once an address
    # ring exists, and serves DNS there (the one address of the host a container
    # on the overlay can reach).
    h1, h2, r1, r2 = two_hosts(lab, dns_listen=False)
    beta = lab.add_container(h2)
    status, result = cni(h2, "ADD", conf(r2), beta, args="K8S_POD_NAME=beta")
    assert status == 0, result
    learn(beta, result)
    # beta's attach founded the address ring; h2 exposed itself just after, and the
    # plugin waited for that address (the first container of a fresh mesh)
    assert result["dns"]["nameservers"] == [nameserver(r2)], result["dns"]
    wait_until(lambda: nameserver(r1) != "", 30, "h1 to expose itself on the overlay")
    dns = nameserver(r1)
    podman = Podman(h1, lab.base / "podman", r1.data_dir / "addresses.json")
    try:
        podman.import_busybox()
        podman.run("alpha")
        alpha = endpoint(r1.cli("ps", "--json"), "alpha")
        assert alpha is not None and alpha["ip"].startswith("10.78."), "address from IPAM"
        assert alpha["ip"] in podman("exec", "alpha", "ip", "addr", "show", "eth0")
        resolv = podman("exec", "alpha", "cat", "/etc/resolv.conf")
        assert f"nameserver {dns}" in resolv and f"search {DOMAIN}" in resolv, resolv
        wait_until(lambda: podman.pings("alpha", beta.ip), 60, "alpha to reach beta on h2")
        # by name, from inside the container, through the nameserver in its resolv.conf
        answer = podman("exec", "alpha", "nslookup", f"beta.{DOMAIN}")
        assert beta.ip in answer, answer
        assert podman.pings("alpha", "beta"), "alpha pings beta by its short name (search)"
        # podman rm releases the address
        cid = alpha["container_id"]
        assert alpha["ip"] in r1.cli("ipam", "lookup", cid)
        podman("rm", "-f", "-t", "0", "alpha")
        assert endpoint(r1.cli("ps", "--json"), "alpha") is None
        assert alpha["ip"] not in r1.cli("ipam", "lookup", cid, check=False)
    finally:
        podman.close()

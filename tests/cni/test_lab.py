"""CNI conformance against real routers in the namespace lab (root, Open vSwitch).

Every verb is driven exactly as a runtime drives it: ``meshrouter-cni`` started in
the host's network namespace with ``CNI_COMMAND``/``CNI_CONTAINERID``/
``CNI_NETNS``/``CNI_IFNAME``/``CNI_ARGS``/``CNI_PATH`` in its environment, the
network configuration on stdin, the result or error JSON read from stdout and
the exit status checked.  Containers are the lab's network namespaces; the
router finds its API through ``addressFile`` (the router's ``addresses.json``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cni.runtime import cni, conf, finish, learn, start_plugin, two_hosts
from tests.integration.lab import REPO, Lab
from tests.procs import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_every_verb_as_a_runtime_drives_it(lab: Lab) -> None:
    h1, h2, r1, r2 = two_hosts(lab)
    a, b = lab.add_container(h1), lab.add_container(h2)
    wait_until(lambda: cni(h1, "STATUS", conf(r1)) == (0, None), 60, "STATUS to succeed on h1")
    status, version = cni(h1, "VERSION", {"cniVersion": "1.1.0"})
    assert status == 0 and "1.1.0" in version["supportedVersions"]

    status, ra = cni(h1, "ADD", conf(r1), a, args="IgnoreUnknown=1;K8S_POD_NAME=alpha")
    assert status == 0, ra
    status, rb = cni(h2, "ADD", conf(r2), b)
    assert status == 0, rb
    learn(a, ra)
    learn(b, rb)
    assert ra["interfaces"][1]["sandbox"] == f"/run/netns/{a.ns}"
    assert ra["ips"][0]["address"].startswith("10.78.") and a.ip != b.ip
    assert ra["dns"] == {"nameservers": [h1.ip], "domain": "mesh.local",
                         "search": ["mesh.local"]}
    # the address is on the container's interface, as the result says
    shown = a.exec("ip", "-j", "addr", "show", "eth0")
    assert a.ip in shown and ra["interfaces"][1]["mac"] in shown
    wait_until(lambda: a.ping(b) and b.ping(a), 60, "the two containers to reach each other")
    def lookup() -> str:
        found = subprocess.run(["ip", "netns", "exec", h2.ns, sys.executable, "-m",
                                "meshrouter.cli", "--api", r2.api, "dns-lookup", "alpha"],
                               capture_output=True, text=True, cwd=REPO, check=False)
        return found.stdout

    wait_until(lambda: a.ip in lookup(), 30, "the container's name to reach h2's DNS")

    assert cni(h1, "ADD", conf(r1), a) == (0, ra), "ADD again returns the attachment"
    assert cni(h1, "CHECK", conf(r1, prevResult=ra), a) == (0, None)
    other = {**ra, "ips": [{"address": "10.78.9.9/16", "interface": 1}]}
    status, error = cni(h1, "CHECK", conf(r1, prevResult=other), a)
    assert status == 1 and error["code"] == 7

    # errors: bad config, unknown version, unknown container on CHECK
    status, error = cni(h1, "ADD", {"cniVersion": "1.1.0", "type": "meshrouter-cni"}, a)
    assert (status, error["code"]) == (1, 7)
    status, error = cni(h1, "ADD", conf(r1, cniVersion="7.0.0"), a)
    assert (status, error["code"]) == (1, 1)
    status, error = cni(h1, "CHECK", conf(r1, prevResult=ra), a, cid="never-added")
    assert (status, error["code"]) == (1, 3)

    # DEL releases the address; again is fine; the container is unreachable after it
    assert cni(h2, "DEL", conf(r2), b) == (0, None)
    assert cni(h2, "DEL", conf(r2), b) == (0, None)
    assert b.ip not in r2.cli("ps")
    wait_until(lambda: not a.ping(b), 30, "DEL to remove reachability")

    # GC: attachments not in cni.dev/valid-attachments go; valid ones stay
    c = lab.add_container(h1)
    assert cni(h1, "ADD", conf(r1), c)[0] == 0
    valid = {"cni.dev/valid-attachments": [{"containerID": a.name, "ifname": "eth0"}]}
    assert cni(h1, "GC", conf(r1, **valid)) == (0, None)
    listed = r1.cli("ps", "--json")
    assert f"cni-{a.name}" in listed and f"cni-{c.name}" not in listed

    # a router that is gone: ADD says try again later, STATUS 50, DEL succeeds
    r2.stop()
    d = lab.add_container(h2)
    status, error = cni(h2, "ADD", conf(r2), d)
    assert (status, error["code"]) == (1, 11) and "meshrouter" in error["msg"]
    status, error = cni(h2, "STATUS", conf(r2))
    assert (status, error["code"]) == (1, 50)
    assert cni(h2, "DEL", conf(r2), d) == (0, None)


def test_twenty_concurrent_adds(lab: Lab) -> None:
    h1, h2, r1, r2 = two_hosts(lab)
    hosts = {h1.index: (h1, r1), h2.index: (h2, r2)}
    containers = [lab.add_container(h) for h in (h1, h2) for _ in range(10)]
    wait_until(lambda: cni(h2, "STATUS", conf(r2)) == (0, None), 60, "STATUS on h2")
    started = [start_plugin(hosts[c.host.index][0], "ADD", conf(hosts[c.host.index][1]), c)
               for c in containers]
    for container, process in zip(containers, started, strict=True):
        status, result = finish(process)
        assert status == 0, result
        learn(container, result)
    assert len({c.ip for c in containers}) == 20, [c.ip for c in containers]
    first = containers[0]
    wait_until(lambda: first.ping(containers[-1]), 60, "the first container to reach the last")
    # Three echoes each way, any one answered: a first echo lost while ARP resolves
    # through the overlay (seen once in CI and once under load, never in 19 runs
    # alone) is not what this test is about; a path that does not work is.
    unreachable = [c.name for c in containers[1:]
                   if not (first.ping(c, count=3) and c.ping(first, count=3))]
    assert not unreachable, f"not reachable from/to {first.name}: {unreachable}"

"""The plugin driven as a runtime drives it (environment, config on stdin, JSON on
stdout, exit status) against a stand-in router API on 127.0.0.1; no root needed.

The real router in the namespace lab is ``test_lab.py``'s job.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshrouter.cni import plugin
from meshrouter.cni.plugin import run
from tests.cni.fake_router import FakeRouter

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def router() -> Iterator[FakeRouter]:
    fake = FakeRouter()
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def netns(tmp_path: Path) -> str:
    path = tmp_path / "netns-c1"
    path.write_text("")  # the plugin only checks that the path exists
    return str(path)


def call(command: str, conf: dict[str, Any], cid: str = "c1", netns: str = "/nonexistent",
         ifname: str = "eth0", args: str = "") -> tuple[int, Any, str]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": netns,
           "CNI_IFNAME": ifname, "CNI_ARGS": args, "CNI_PATH": "/opt/cni/bin"}
    out, err = io.StringIO(), io.StringIO()
    status = run(env, io.BytesIO(json.dumps(conf).encode()), out, err)
    text = out.getvalue()
    return status, json.loads(text) if text.strip() else None, err.getvalue()


def conf_for(router: FakeRouter, **extra: Any) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "mesh", "type": "meshrouter-cni",
            "api": router.address, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_add_check_del(router: FakeRouter, netns: str) -> None:
    conf = conf_for(router, mtu=1400)
    status, result, _ = call("ADD", conf, netns=netns, args="IgnoreUnknown=1;K8S_POD_NAME=web")
    assert status == 0, result
    assert result == {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "vmr3"}, {"name": "eth0", "mac": "02:00:00:00:00:03",
                                          "sandbox": netns, "mtu": 1400}],
        "ips": [{"address": "10.40.0.2/24", "interface": 1}],
        "routes": [{"dst": "10.40.0.0/24"}],
        "dns": {"nameservers": ["192.168.5.1"], "domain": "mesh.local",
                "search": ["mesh.local"]},
    }
    assert router.requests[0] == ("POST", "/attach", {
        "container_id": "cni-c1", "netns": netns, "ifname": "eth0", "name": "web", "mtu": 1400})
    # ADD again: the existing attachment is returned
    assert call("ADD", conf, netns=netns)[1] == result
    assert call("CHECK", {**conf, "prevResult": result}, netns=netns)[:2] == (0, None)
    wrong = {**result, "ips": [{"address": "10.40.0.99/24", "interface": 1}]}
    status, error, _ = call("CHECK", {**conf, "prevResult": wrong}, netns=netns)
    assert status == 1 and error["code"] == 7 and "10.40.0.99" in error["msg"]
    assert call("DEL", conf, netns=netns)[:2] == (0, None)
    assert router.attached == {}
    assert call("DEL", conf, netns=netns)[:2] == (0, None), "DEL is idempotent"
    status, error, _ = call("CHECK", {**conf, "prevResult": result}, netns=netns)
    assert status == 1 and error["code"] == 3


def test_static_ip_and_second_interface(router: FakeRouter, netns: str) -> None:
    status, result, _ = call("ADD", conf_for(router), netns=netns, ifname="net1",
                             args="IP=10.40.0.77")
    assert status == 0 and result["ips"][0]["address"] == "10.40.0.77/24"
    assert router.requests[0][2] == {"container_id": "cni-c1-net1", "netns": netns,
                                     "ifname": "net1", "ip": "10.40.0.77"}


def test_version_and_unknown_version(router: FakeRouter) -> None:
    status, answer, _ = call("VERSION", {"cniVersion": "1.1.0"})
    assert status == 0 and answer["supportedVersions"][-1] == "1.1.0"
    status, error, _ = call("ADD", {**conf_for(router), "cniVersion": "3.0.0"})
    assert (status, error["code"], error["cniVersion"]) == (1, 1, "3.0.0")
    assert router.requests == []
    for verb in ("STATUS", "GC"):
        status, error, _ = call(verb, {**conf_for(router), "cniVersion": "1.0.0"})
        assert (status, error["code"]) == (1, 1)


def test_bad_config_and_environment(router: FakeRouter, netns: str) -> None:
    status, error, _ = call("ADD", {"cniVersion": "1.1.0"}, netns=netns)
    assert (status, error["code"]) == (1, 7) and '"name"' in error["msg"]
    status, error, _ = call("ADD", conf_for(router), netns="/no/such/netns")
    assert (status, error["code"]) == (1, 4)
    status, error, _ = call("ADD", conf_for(router), cid="")
    assert (status, error["code"]) == (1, 4)
    out = io.StringIO()
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c", "CNI_NETNS": netns, "CNI_IFNAME": "e"}
    assert run(env, io.BytesIO(b"{oops"), out, io.StringIO()) == 1
    assert json.loads(out.getvalue())["code"] == 6
    assert router.requests == []


def test_missing_router(netns: str) -> None:
    conf = {"cniVersion": "1.1.0", "name": "mesh", "api": f"127.0.0.1:{free_port()}"}
    status, error, _ = call("ADD", conf, netns=netns)
    assert (status, error["code"]) == (1, 11)
    assert "cannot reach" in error["msg"] and "meshrouter" in error["msg"]
    status, error, _ = call("STATUS", conf)
    assert (status, error["code"]) == (1, 50)
    status, out, err = call("DEL", conf, netns=netns)
    assert (status, out) == (0, None) and "router is down" in err
    missing_file = {**conf, "addressFile": "/nonexistent/addresses.json"}
    assert call("ADD", missing_file, netns=netns)[1]["code"] == 11
    assert call("STATUS", missing_file)[1]["code"] == 50
    assert call("DEL", missing_file, netns=netns)[:2] == (0, None)


def test_address_file(router: FakeRouter, netns: str, tmp_path: Path) -> None:
    record = tmp_path / "addresses.json"
    record.write_text(json.dumps({"api": router.address, "pid": 1}))
    conf = {"cniVersion": "1.1.0", "name": "mesh", "api": "127.0.0.1:1",
            "addressFile": str(record)}
    assert call("ADD", conf, netns=netns)[0] == 0
    record.write_text("garbage")
    assert call("ADD", conf, netns=netns)[1]["code"] == 7


def test_router_errors_keep_their_kind(router: FakeRouter, netns: str) -> None:
    router.fail["POST /attach"] = (409, "address 10.40.0.9 is already used by container z")
    status, error, _ = call("ADD", conf_for(router), netns=netns)
    assert (status, error["code"]) == (1, 100) and "already used" in error["msg"]
    router.fail["POST /attach"] = (503, "no address space reachable")
    assert call("ADD", conf_for(router), netns=netns)[1]["code"] == 11
    router.fail["DELETE /attach/cni-c1"] = (500, "internal")
    assert call("DEL", conf_for(router), netns=netns)[1]["code"] == 101


def test_status(router: FakeRouter) -> None:
    assert call("STATUS", conf_for(router))[:2] == (0, None)
    router.ipam = {"state": "ready", "pending": [], "peers": [{"reachable": False, "size": 9}]}
    status, error, _ = call("STATUS", conf_for(router))
    assert (status, error["code"]) == (1, 50) and "no reachable peer" in error["msg"]
    router.ipam = {"state": "waiting to learn the ring from a peer", "pending": [], "peers": []}
    assert call("STATUS", conf_for(router))[1]["code"] == 50
    router.ipam = None
    assert "without IPAM" in call("STATUS", conf_for(router))[1]["msg"]


def test_gc_releases_only_invalid_plugin_attachments(router: FakeRouter, netns: str) -> None:
    for cid in ("keep", "drop1", "drop2"):
        assert call("ADD", conf_for(router), cid=cid, netns=netns)[0] == 0
    router.attached["manual"] = {**router.attached["cni-keep"], "container_id": "manual"}
    conf = conf_for(router, **{"cni.dev/valid-attachments": [
        {"containerID": "keep", "ifname": "eth0"}]})
    assert call("GC", conf)[:2] == (0, None)
    assert sorted(router.attached) == ["cni-keep", "manual"]
    deletes = [path for method, path, _ in router.requests if method == "DELETE"]
    assert deletes == ["/attach/cni-drop1", "/attach/cni-drop2"]


def dns_requests(router: FakeRouter) -> list[str]:
    return [path for _, path, _ in router.requests if path.startswith("/status/")]


def test_the_first_container_waits_for_the_exposed_dns_address(
        router: FakeRouter, netns: str) -> None:
    """A fresh mesh: the ADD's attach made the address ring and the router is about to
    expose the host; the result carries the address once the router names it."""
    router.expose = {"state": "not exposed", "mode": "auto", "pending": True}
    not_yet = {**router.dns, "nameserver": ""}
    router.dns_later = [not_yet, not_yet, not_yet]
    status, result, _ = call("ADD", conf_for(router), netns=netns)
    assert status == 0 and result["dns"]["nameservers"] == ["192.168.5.1"]
    assert dns_requests(router) == ["/status/dns", "/status/expose"] + ["/status/dns"] * 3


def test_no_wait_when_the_router_will_not_expose(router: FakeRouter, netns: str) -> None:
    router.dns = {**router.dns, "nameserver": ""}
    for expose in (None, {"state": "not exposed", "mode": "auto", "pending": False},
                   {"state": "hidden", "mode": "hidden"}):
        router.expose = expose
        router.requests.clear()
        status, result, _ = call("ADD", conf_for(router), netns=netns)
        assert status == 0 and "nameservers" not in result["dns"]
        assert dns_requests(router) == ["/status/dns", "/status/expose"], expose


def test_the_wait_for_the_dns_address_is_bounded(router: FakeRouter, netns: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plugin, "EXPOSE_WAIT", 0.3)
    router.dns = {**router.dns, "nameserver": ""}
    router.expose = {"state": "not exposed", "mode": "auto", "pending": True}
    status, result, err = call("ADD", conf_for(router), netns=netns)
    assert status == 0 and "nameservers" not in result["dns"]
    assert "did not expose the host within 0.3 s" in err
    assert 2 <= dns_requests(router).count("/status/dns") <= 5


def test_executable_speaks_on_stdout_with_exit_status(router: FakeRouter, netns: str) -> None:
    """The console script's module as a process: exit 0 + result, exit 1 + error JSON."""
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "p1",
           "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin"}
    ok = subprocess.run([sys.executable, "-m", "meshrouter.cni.plugin"], env=env, cwd=REPO,
                        input=json.dumps(conf_for(router)), capture_output=True, text=True,
                        timeout=30, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ips"][0]["address"] == "10.40.0.2/24"
    bad = subprocess.run([sys.executable, "-m", "meshrouter.cni.plugin"],
                         env={**env, "CNI_COMMAND": "ADD"}, cwd=REPO, input="{}",
                         capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 1 and json.loads(bad.stdout)["code"] == 7

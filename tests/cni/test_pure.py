"""The pure parts of the CNI plugin: environment, configuration, results, error mapping."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshrouter.cni.netconf import (
    Invocation,
    attachment_id,
    container_name,
    decode_config,
    is_id,
    is_ifname,
    parse_cni_args,
    parse_environment,
    parse_netconf,
    requested_ip,
)
from meshrouter.cni.result import add_result, check_problem, dns_section, error_for, status_problem
from meshrouter.cni.spec import CniError, check_version, version_answer

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin:/usr/lib/cni"}


def code_of(fn: object, *args: object) -> int:
    with pytest.raises(CniError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.code


def test_environment_parsed() -> None:
    inv = parse_environment({**ENV, "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web_1"})
    assert (inv.command, inv.container_id, inv.netns, inv.ifname) == (
        "ADD", "abc123", "/run/netns/x", "eth0")
    assert inv.args == {"IgnoreUnknown": "1", "K8S_POD_NAME": "web_1"}
    assert inv.path == ("/opt/cni/bin", "/usr/lib/cni")


@pytest.mark.parametrize("change", [
    {"CNI_COMMAND": "ATTACH"}, {"CNI_COMMAND": ""}, {"CNI_CONTAINERID": ""},
    {"CNI_CONTAINERID": "-bad"}, {"CNI_IFNAME": ""}, {"CNI_IFNAME": "x" * 16},
    {"CNI_NETNS": ""}, {"CNI_ARGS": "novalue"},
])
def test_bad_environment_is_code_4(change: dict[str, str]) -> None:
    assert code_of(parse_environment, {**ENV, **change}) == 4


def test_del_needs_no_netns_and_version_needs_nothing() -> None:
    assert parse_environment({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}).netns == ""
    assert parse_environment({"CNI_COMMAND": "VERSION"}).command == "VERSION"


def test_cni_args() -> None:
    assert parse_cni_args("A=1;;B=x=y") == {"A": "1", "B": "x=y"}
    assert code_of(parse_cni_args, "=1") == 4


def test_config_decoding_errors_are_code_6() -> None:
    assert code_of(decode_config, b"{not json") == 6
    assert code_of(decode_config, b"[1]") == 6
    assert code_of(decode_config, b" " * (1024 * 1024 + 1)) == 6


def test_netconf_fields() -> None:
    conf = parse_netconf({"cniVersion": "1.1.0", "name": "mesh", "type": "meshrouter-cni",
                          "api": "127.0.0.1:7000", "mtu": 1400, "timeout": 5,
                          "cni.dev/valid-attachments": [{"containerID": "a", "ifname": "eth0"}],
                          "runtimeConfig": {"ips": ["10.1.0.9/16"]}})
    assert (conf.api, conf.mtu, conf.timeout) == ("127.0.0.1:7000", 1400, 5.0)
    assert conf.valid_attachments == (("a", "eth0"),)
    assert conf.runtime_ips == ("10.1.0.9/16",)
    defaults = parse_netconf({"cniVersion": "0.4.0", "name": "n"})
    assert (defaults.api, defaults.mtu, defaults.valid_attachments) == ("127.0.0.1:6784", None,
                                                                       None)


@pytest.mark.parametrize("raw", [
    {"name": "n"}, {"cniVersion": "1.1.0"}, {"cniVersion": "1.1.0", "name": "-x"},
    {"cniVersion": "1.1.0", "name": "n", "mtu": 100}, {"cniVersion": "1.1.0", "name": "n",
                                                       "mtu": True},
    {"cniVersion": "1.1.0", "name": "n", "api": 5},
    {"cniVersion": "1.1.0", "name": "n", "timeout": 0},
    {"cniVersion": "1.1.0", "name": "n", "cni.dev/valid-attachments": [{"containerID": 1}]},
    {"cniVersion": "1.1.0", "name": "n", "runtimeConfig": {"ips": "10.0.0.1"}},
    {"cniVersion": "1.1.0", "name": "n", "dns": []},
])
def test_bad_config_is_code_7(raw: dict[str, object]) -> None:
    assert code_of(parse_netconf, raw) == 7


@pytest.mark.parametrize("version", ["2.0.0", "0.2.0", "1.1", "x", "1.1.0-rc1"])
def test_unknown_version_is_code_1(version: str) -> None:
    assert code_of(parse_netconf, {"cniVersion": version, "name": "n"}) == 1
    assert code_of(check_version, version) == 1


def test_version_answer() -> None:
    assert version_answer() == {"cniVersion": "1.1.0", "supportedVersions": [
        "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


def test_attachment_ids() -> None:
    assert attachment_id("abc", "eth0") == "cni-abc"
    assert attachment_id("abc", "net1") == "cni-abc-net1"
    long_id = "f" * 200
    hashed = attachment_id(long_id, "eth0")
    assert hashed.startswith("cni-h") and len(hashed) == 69
    assert attachment_id(long_id, "eth1") != hashed


@given(st.text(alphabet="abcdef0123456789-_.", min_size=1, max_size=300),
       st.sampled_from(["eth0", "eth1", "net0"]))
def test_attachment_id_is_always_a_router_id(cid: str, ifname: str) -> None:
    aid = attachment_id(cid, ifname)
    assert aid.startswith("cni-") and len(aid) <= 128
    assert all(c.isalnum() or c in "_.-" for c in aid)


def test_requested_ip_and_name() -> None:
    inv = parse_environment({**ENV, "CNI_ARGS": "IP=10.9.0.4;K8S_POD_NAME=My_Pod.1"})
    conf = parse_netconf({"cniVersion": "1.1.0", "name": "n"})
    assert requested_ip(inv, conf) == "10.9.0.4"
    assert container_name(inv) == "my-pod-1"
    plain = parse_environment(ENV)
    assert requested_ip(plain, conf) is None and container_name(plain) == ""
    two = parse_netconf({"cniVersion": "1.1.0", "name": "n",
                         "runtimeConfig": {"ips": ["10.0.0.1", "10.0.0.2"]}})
    assert code_of(requested_ip, plain, two) == 7


ATTACHED = {"container_id": "cni-abc", "mac": "02:aa:bb:cc:dd:ee", "ip": "10.32.0.5/12",
            "port": 7, "ifname": "eth0", "host_ifname": "vmr1234", "mtu": 1376, "host": "x"}


def test_add_result() -> None:
    dns = {"nameservers": ["192.168.1.1"], "domain": "mesh.local", "search": ["mesh.local"]}
    assert add_result("1.1.0", ATTACHED, "/run/netns/x", dns) == {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "vmr1234"},
                       {"name": "eth0", "mac": "02:aa:bb:cc:dd:ee", "sandbox": "/run/netns/x",
                        "mtu": 1376}],
        "ips": [{"address": "10.32.0.5/12", "interface": 1}],
        "routes": [{"dst": "10.32.0.0/12"}],
        "dns": dns,
    }
    old = add_result("0.4.0", ATTACHED, "/run/netns/x", {})
    assert old["ips"] == [{"address": "10.32.0.5/12", "interface": 1, "version": "4"}]
    assert code_of(add_result, "1.1.0", {"ip": "10.0.0.1/8"}, "/x", {}) == 5


def test_dns_section() -> None:
    assert dns_section(None, {"listen": "172.17.0.1:53", "domain": "weave.local."}) == {
        "nameservers": ["172.17.0.1"], "domain": "weave.local", "search": ["weave.local"]}
    assert dns_section(None, {"listen": "disabled", "domain": ""}) == {}
    assert dns_section(None, {"listen": "0.0.0.0:53", "domain": "m."}) == {
        "domain": "m", "search": ["m"]}
    assert "nameservers" not in dns_section(None, {"listen": "127.0.0.1:53", "domain": "m."})
    assert dns_section({"nameservers": ["1.1.1.1"]}, {"listen": "1.2.3.4:53"}) == {
        "nameservers": ["1.1.1.1"]}
    assert dns_section(None, None) == {}
    # the router names the address for containers (its exposed overlay address)
    exposed = {"listen": "127.0.0.1:53", "nameserver": "10.32.0.1", "domain": "m."}
    assert dns_section(None, exposed) == {"nameservers": ["10.32.0.1"], "domain": "m",
                                          "search": ["m"]}
    assert dns_section(None, {"listen": "192.168.1.5:53", "nameserver": "",
                              "domain": "m."}) == {"domain": "m", "search": ["m"]}
    assert "nameservers" not in dns_section(None, {"nameserver": "bogus", "domain": "m."})


@pytest.mark.parametrize(("status", "code"), [
    (503, 11), (504, 11), (502, 11), (400, 7), (415, 7), (404, 3), (409, 100), (500, 101)])
def test_error_mapping(status: int, code: int) -> None:
    error = error_for(status, "boom", "attach container x")
    assert error.code == code and "attach container x" in error.msg and "boom" in error.msg


def test_error_json() -> None:
    assert CniError(7, "m", "d").to_json("1.0.0") == {"cniVersion": "1.0.0", "code": 7,
                                                     "msg": "m", "details": "d"}
    assert CniError(7, "m").to_json("1.1.0") == {"cniVersion": "1.1.0", "code": 7, "msg": "m"}


def ring(state: str, peers: list[dict[str, object]]) -> dict[str, object]:
    return {"state": state, "peers": peers, "pending": []}


def test_status_problem() -> None:
    assert status_problem(ring("ready", [{"reachable": True, "size": 100}])) is None
    assert status_problem(ring("idle (the ring is founded at the first allocation)", [])) is None
    assert "no reachable peer" in str(status_problem(ring("ready", [
        {"reachable": False, "size": 100}, {"reachable": True, "size": 0}])))
    waiting = {"state": "awaiting consensus", "peers": [],
               "pending": [{"reason": "1 of 2 votes needed"}]}
    assert status_problem(waiting) == ("the address ring is not ready (awaiting consensus; "
                                       "1 of 2 votes needed)")
    assert "without IPAM" in str(status_problem(None))


def test_check_problem() -> None:
    prev = add_result("1.1.0", ATTACHED, "/run/netns/x", {})
    same = {"container_id": "cni-abc", "ip": "10.32.0.5", "mac": "02:aa:bb:cc:dd:ee"}
    assert check_problem(prev, same, "abc") is None
    assert check_problem(None, same, "abc") is None
    assert "no attachment" in str(check_problem(prev, None, "abc"))
    assert "10.32.0.6" in str(check_problem(prev, {**same, "ip": "10.32.0.6"}, "abc"))
    assert "MAC" in str(check_problem(prev, {**same, "mac": "02:00:00:00:00:01"}, "abc"))


def test_result_is_json() -> None:
    result = add_result("1.1.0", ATTACHED, "/run/netns/x", {})
    assert json.loads(json.dumps(result)) == result


# Oracles: the regular expressions the plugin stopped compiling at every start.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
IFNAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,15}")
NOT_LABEL = re.compile(r"[^a-z0-9-]+")
# Mostly the characters that matter, sometimes anything.
ID_TEXT = st.text(alphabet="aZ09_.-/ \u00e9\u0130\x00", max_size=20) | st.text(max_size=20)


@given(ID_TEXT | st.text(alphabet="aZ09_.-", min_size=14, max_size=17))
def test_is_id_and_is_ifname_match_the_patterns(text: str) -> None:
    assert is_id(text) == bool(ID_PATTERN.fullmatch(text))
    assert is_ifname(text) == bool(IFNAME_PATTERN.fullmatch(text))


@given(ID_TEXT | st.text(alphabet="ab-_. ", max_size=80))
def test_container_name_is_the_lowercased_label(raw: str) -> None:
    expected = NOT_LABEL.sub("-", raw.lower()).strip("-")[:63].rstrip("-")
    assert container_name(Invocation("ADD", args={"K8S_POD_NAME": raw})) == expected

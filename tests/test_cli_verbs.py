"""Each client verb against a recording fake API (``tests/test_cli_client.py``):
the exact request it sends, what it prints, and that bad arguments are refused
before any request.  The real router behind these requests is exercised by
``tests/test_processes.py`` and ``tests/test_ipam_processes.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from meshrouter.cli import main
from tests.test_cli_client import FakeApi, running_fake_api


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    with running_fake_api() as fake:
        yield fake

PEER = "0a:0b:0c:0d:0e:0f"


def run(fake: FakeApi, *args: str) -> Result:
    return CliRunner().invoke(main, ["--api", fake.address, *args])


def sent(fake: FakeApi) -> list[tuple[str, str, object]]:
    return [
        (r.method, r.path, json.loads(r.body) if r.body else None) for r in fake.requests
    ]


def test_connect_and_connect_replace(fake_api: FakeApi) -> None:
    fake_api.json("POST", "/connect", {"connecting": ["10.0.0.1:6783", "h2:7000"]})
    result = run(fake_api, "connect", "10.0.0.1", "h2:7000")
    assert result.exit_code == 0, result.output
    assert result.stdout == "connecting to 10.0.0.1:6783\nconnecting to h2:7000\n"
    assert run(fake_api, "connect", "--replace", "10.0.0.2").exit_code == 0
    assert sent(fake_api) == [
        ("POST", "/connect", {"peers": ["10.0.0.1:6783", "h2:7000"], "replace": False}),
        ("POST", "/connect", {"peers": ["10.0.0.2:6783"], "replace": True}),
    ]


def test_a_bad_peer_address_is_a_usage_error_and_sends_nothing(fake_api: FakeApi) -> None:
    result = run(fake_api, "connect", "bad:addr:x")
    assert result.exit_code == 2 and "IPv6" in result.stderr
    assert run(fake_api, "forget", "host:0").exit_code == 2
    assert fake_api.requests == []


def test_forget_reports_unknown_peers_on_stderr(fake_api: FakeApi) -> None:
    fake_api.json("POST", "/forget", {"unknown": ["10.0.0.9:6783"]})
    result = run(fake_api, "forget", "10.0.0.1", "10.0.0.9")
    assert result.exit_code == 0
    assert result.stderr == "not a direct peer: 10.0.0.9:6783\n"
    assert sent(fake_api) == [("POST", "/forget", {"peers": ["10.0.0.1:6783", "10.0.0.9:6783"]})]


def test_status_json_and_report_print_the_answer(fake_api: FakeApi) -> None:
    targets = [{"address": "10.0.0.1:6783", "direct": True, "state": "retrying", "peer": "",
                "info": "connection refused; retry in 2.0s"}]
    fake_api.json("GET", "/status/targets", targets)
    fake_api.json("GET", "/report", {"router": {"nickname": "n1", "peers": []}})
    result = run(fake_api, "status", "targets", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == targets
    report = run(fake_api, "report")
    assert json.loads(report.stdout) == {"router": {"nickname": "n1", "peers": []}}
    assert run(fake_api, "status", "nonsense").exit_code == 2
    assert sent(fake_api) == [("GET", "/status/targets", None), ("GET", "/report", None)]


def test_stop(fake_api: FakeApi) -> None:
    fake_api.json("POST", "/stop", {"stopping": True})
    result = run(fake_api, "stop")
    assert result.exit_code == 0 and result.stdout == "router stopping\n"
    assert sent(fake_api) == [("POST", "/stop", {})]


def test_ipam_allocate_with_and_without_subnet(fake_api: FakeApi) -> None:
    fake_api.json("POST", "/ip/web%2F1?wait=30", {"container": "web/1", "address": "10.32.0.1/12"})
    fake_api.json("POST", "/ip/db/10.32.8.0/24?wait=2.5",
                  {"container": "db", "address": "10.32.8.1/12"})
    first = run(fake_api, "ipam", "allocate", "web/1")
    assert first.exit_code == 0 and first.stdout == "10.32.0.1/12\n"
    second = run(fake_api, "ipam", "allocate", "db", "--subnet", "10.32.8.0/24", "--wait", "2.5")
    assert second.exit_code == 0 and second.stdout == "10.32.8.1/12\n"
    assert [(m, p) for m, p, _ in sent(fake_api)] == [
        ("POST", "/ip/web%2F1?wait=30"),
        ("POST", "/ip/db/10.32.8.0/24?wait=2.5"),
    ]


def test_ipam_claim_drops_a_prefix_length(fake_api: FakeApi) -> None:
    fake_api.json("PUT", "/ip/c1/10.32.0.9?wait=30", {"container": "c1", "address": "10.32.0.9/12"})
    result = run(fake_api, "ipam", "claim", "c1", "10.32.0.9/12")
    assert result.exit_code == 0 and result.stdout == "10.32.0.9/12\n"


def test_ipam_release_both_forms_and_lookup(fake_api: FakeApi) -> None:
    fake_api.json("DELETE", "/ip/c1/10.32.0.9", {"container": "c1", "released": ["10.32.0.9/12"]})
    fake_api.json("DELETE", "/ip/c2", {"container": "c2",
                                       "released": ["10.32.0.1/12", "10.32.0.2/12"]})
    fake_api.json("GET", "/ip/c3", {"container": "c3", "addresses": ["10.32.0.3/12"]})
    one = run(fake_api, "ipam", "release", "c1", "10.32.0.9/12")
    assert one.exit_code == 0 and one.stdout == "released 10.32.0.9/12\n"
    every = run(fake_api, "ipam", "release", "c2")
    assert every.stdout == "released 10.32.0.1/12\nreleased 10.32.0.2/12\n"
    found = run(fake_api, "ipam", "lookup", "c3")
    assert found.exit_code == 0 and found.stdout == "10.32.0.3/12\n"
    assert [(m, p) for m, p, _ in sent(fake_api)] == [
        ("DELETE", "/ip/c1/10.32.0.9"), ("DELETE", "/ip/c2"), ("GET", "/ip/c3"),
    ]


def test_an_api_error_is_one_line_and_exit_1(fake_api: FakeApi) -> None:
    fake_api.json("GET", "/ip/ghost", {"error": "container ghost has no address", "status": 404},
                  status=404)
    result = run(fake_api, "ipam", "lookup", "ghost")
    assert result.exit_code == 1
    assert result.stderr == "meshrouter: error: container ghost has no address\n"


@pytest.mark.parametrize("wait", ["-1", "3601", "soon"])
def test_wait_is_validated_before_any_request(fake_api: FakeApi, wait: str) -> None:
    result = run(fake_api, "ipam", "allocate", "c", "--wait", wait)
    assert result.exit_code == 2 and "--wait" in result.stderr
    assert fake_api.requests == []


def test_rmpeer_checks_the_name_then_asks(fake_api: FakeApi) -> None:
    bad = run(fake_api, "rmpeer", "not-a-name")
    assert bad.exit_code == 2 and fake_api.requests == []
    fake_api.json("DELETE", f"/peer/{PEER.replace(':', '%3A')}",
                  {"peer": PEER, "addresses_taken": 12})
    result = run(fake_api, "rmpeer", PEER)
    assert result.exit_code == 0 and result.stdout == f"took over 12 addresses of {PEER}\n"


def test_reset_says_who_got_the_space(fake_api: FakeApi) -> None:
    fake_api.json("DELETE", "/peer", {"handed_to": PEER, "stopping": True})
    result = run(fake_api, "reset")
    assert result.stdout == f"address space handed to {PEER}\nrouter stopping\n"
    fake_api.json("DELETE", "/peer", {"handed_to": None, "stopping": True})
    assert run(fake_api, "reset").stdout.startswith("no address space to hand over\n")


def test_a_bad_api_address_is_one_line(fake_api: FakeApi) -> None:
    result = CliRunner().invoke(main, ["--api", "127.0.0.1:99999", "status"])
    assert result.exit_code == 1
    assert result.stderr.startswith("meshrouter: error: --api '127.0.0.1:99999': port must be")

"""``meshrouter expose`` / ``hide`` against a recording fake API: the request each
sends, what it prints, errors as one line (the real router behind them:
``tests/expose/test_service.py`` and ``tests/integration/test_expose_lab.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from meshrouter.cli import main
from tests.test_cli_client import FakeApi, running_fake_api

EXPOSED = {"state": "exposed", "address": "10.32.0.1/12", "interface": "mr-expose",
           "container_id": "host-0a0b0c0d0e0f", "mode": "exposed", "auto": True, "error": ""}


@pytest.fixture
def fake_api() -> Iterator[FakeApi]:
    with running_fake_api() as fake:
        yield fake


def run(fake: FakeApi, *args: str) -> Result:
    return CliRunner().invoke(main, ["--api", fake.address, *args])


def sent(fake: FakeApi) -> list[tuple[str, str, object]]:
    return [(r.method, r.path, json.loads(r.body) if r.body else None) for r in fake.requests]


def test_expose_prints_the_address_and_sends_the_one_asked(fake_api: FakeApi) -> None:
    fake_api.json("POST", "/expose", EXPOSED)
    assert run(fake_api, "expose").stdout == "10.32.0.1/12\n"
    result = run(fake_api, "expose", "--ip", "10.32.0.1/12", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == EXPOSED
    assert sent(fake_api) == [("POST", "/expose", {}),
                              ("POST", "/expose", {"ip": "10.32.0.1/12"})]


def test_hide_says_what_it_released(fake_api: FakeApi) -> None:
    fake_api.json("DELETE", "/expose", {**EXPOSED, "state": "hidden", "address": "",
                                        "released": ["10.32.0.1/12"]})
    assert run(fake_api, "hide").stdout == "hidden; released 10.32.0.1/12\n"
    fake_api.json("DELETE", "/expose", {**EXPOSED, "state": "hidden", "released": []})
    assert run(fake_api, "hide").stdout == "hidden\n"
    assert [m for m, _, _ in sent(fake_api)] == ["DELETE", "DELETE"]


def test_a_refusal_is_one_line_and_exit_1(fake_api: FakeApi) -> None:
    fake_api.json("POST", "/expose", {"error": "the host is already exposed as 10.32.0.1/12; "
                                      "`meshrouter hide` first to change its address",
                                      "status": 409}, status=409)
    result = run(fake_api, "expose", "--ip", "10.32.0.9/12")
    assert result.exit_code == 1
    assert result.stderr.startswith("meshrouter: error:") and "hide` first" in result.stderr

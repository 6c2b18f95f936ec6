"""The API's request guard as a pure function: Host, Origin, Sec-Fetch-Site and
Content-Type rules (api/guard.py), one case per rule and its boundary."""

from __future__ import annotations

import pytest

from meshrouter.api.guard import refusal

CLI = {"host": "127.0.0.1:6784", "accept": "application/json"}


def _headers(**extra: str) -> dict[str, str]:
    return {**CLI, **{k.replace("_", "-"): v for k, v in extra.items()}}


@pytest.mark.parametrize("host", ["127.0.0.1:6784", "localhost:6784", "[::1]:6784", "10.1.2.3:80"])
def test_ip_literals_and_localhost_are_served(host: str) -> None:
    assert refusal("GET", {"host": host}, "127.0.0.1") is None


def test_dns_name_is_refused_against_rebinding() -> None:
    status, message = refusal("GET", {"host": "attacker.example:6784"}, "127.0.0.1") or (0, "")
    assert status == 403 and "attacker.example" in message and "rebinding" in message


def test_the_configured_bind_name_is_served() -> None:
    assert refusal("GET", {"host": "router-1.lan:6784"}, "router-1.lan") is None
    assert refusal("GET", {"host": "router-2.lan:6784"}, "router-1.lan") is not None


def test_missing_host_is_refused() -> None:
    assert refusal("GET", {}, "127.0.0.1") == (403, "request has no Host header")


def test_cross_origin_post_is_refused_even_as_json() -> None:
    headers = _headers(origin="http://evil.example", content_type="application/json")
    status, message = refusal("POST", headers, "127.0.0.1") or (0, "")
    assert status == 403 and "evil.example" in message


def test_same_origin_is_served() -> None:
    headers = _headers(origin="http://127.0.0.1:6784", content_type="application/json")
    assert refusal("POST", headers, "127.0.0.1") is None


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
def test_sec_fetch_site_other_than_same_origin_is_refused(site: str) -> None:
    status, _ = refusal("GET", _headers(sec_fetch_site=site), "127.0.0.1") or (0, "")
    assert status == 403


@pytest.mark.parametrize("site", ["same-origin", "none"])
def test_sec_fetch_site_same_origin_or_user_typed_is_served(site: str) -> None:
    assert refusal("GET", _headers(sec_fetch_site=site), "127.0.0.1") is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_state_changes_need_json(method: str) -> None:
    status, message = refusal(method, _headers(content_type="text/plain"), "127.0.0.1") or (0, "")
    assert status == 415 and "text/plain" in message
    status, message = refusal(method, _headers(), "127.0.0.1") or (0, "")
    assert status == 415 and "none" in message
    json_headers = _headers(content_type="application/json; charset=utf-8")
    assert refusal(method, json_headers, "127.0.0.1") is None


def test_reads_need_no_content_type() -> None:
    assert refusal("GET", _headers(), "127.0.0.1") is None


def test_undecodable_path_or_query_is_refused() -> None:
    from meshrouter.api.guard import undecodable

    assert undecodable(b"/ip/web-1", b"wait=3") is None
    assert undecodable(b"/ip/caf%C3%A9", b"") is None
    assert undecodable(b"/ip/caf%E9", b"") == "the request path is not valid UTF-8 once unescaped"
    assert undecodable(b"/dns/x", b"address=%FF") == (
        "the request query is not valid UTF-8 once unescaped"
    )

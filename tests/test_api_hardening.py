"""A web page in the operator's browser must not drive the API (issue 15, item 5):
real router processes, requests shaped exactly as a browser sends them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.procs import RouterFleet, RouterProcess

pytestmark = pytest.mark.processes


@pytest.fixture
def router(tmp_path: Path) -> Iterator[RouterProcess]:
    fleet = RouterFleet(tmp_path)
    try:
        yield fleet.launch("guarded", extra=["--no-ipam"])
    finally:
        fleet.stop_all()


def test_cross_site_form_post_cannot_stop_the_router(router: RouterProcess) -> None:
    # What <form method=post enctype=text/plain action=http://127.0.0.1:.../stop>
    # sends: a "simple" request, no preflight.
    response = httpx.post(
        f"http://{router.api}/stop",
        content=b"x=y",
        headers={
            "Content-Type": "text/plain",
            "Origin": "http://evil.example",
            "Sec-Fetch-Site": "cross-site",
        },
        timeout=5,
    )
    assert response.status_code == 403
    assert response.json()["status"] == 403 and "evil.example" in response.json()["error"]
    # Without the browser headers, text/plain alone is still refused.
    plain = httpx.post(f"http://{router.api}/stop", content=b"", timeout=5,
                       headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415
    assert router.process.poll() is None
    assert router.get("/status")["nickname"] == "guarded"


def test_cross_site_connect_is_refused(router: RouterProcess) -> None:
    response = httpx.post(
        f"http://{router.api}/connect",
        json={"peers": ["127.0.0.1:9"]},
        headers={"Origin": "http://evil.example"},
        timeout=5,
    )
    assert response.status_code == 403
    assert router.get("/status/targets") == []


def test_dns_rebinding_host_cannot_read_the_report(router: RouterProcess) -> None:
    port = router.api.rsplit(":", 1)[1]
    response = httpx.get(
        f"http://{router.api}/report", headers={"Host": f"rebind.example:{port}"}, timeout=5
    )
    assert response.status_code == 403 and "rebinding" in response.json()["error"]
    ok = httpx.get(f"http://{router.api}/report", headers={"Host": f"localhost:{port}"},
                   timeout=5)
    assert ok.status_code == 200 and ok.json()["router"]["nickname"] == "guarded"


def test_the_cli_client_still_drives_state_changes(router: RouterProcess) -> None:
    from meshrouter.api.client import ApiClient

    client = ApiClient(router.api)
    assert client.request("POST", "/connect", {"peers": ["127.0.0.1:9"]}) == {
        "connecting": ["127.0.0.1:9"]
    }
    assert client.request("POST", "/forget", {"peers": ["127.0.0.1:9"]}) == {"unknown": []}


def test_container_ids_that_are_not_utf8_are_refused_not_merged(router: RouterProcess) -> None:
    # Two IDs that a lenient decoder would both turn into "c\ufffd".
    for raw in ("c%FF", "c%FE"):
        response = httpx.get(f"http://{router.api}/ip/{raw}", timeout=5)
        assert response.status_code == 400, response.text
        assert "not valid UTF-8" in response.json()["error"]

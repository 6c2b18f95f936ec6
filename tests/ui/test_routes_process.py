"""A real router serves the page and the picture; the CLI draws the picture
(``save_graph``, behind ``status --graph``) and walks ``explain``."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import pytest

from meshrouter.cli.ops_verbs import save_graph
from tests.procs import RouterFleet, wait_until

pytestmark = pytest.mark.processes


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RouterFleet]:
    routers = RouterFleet(tmp_path)
    try:
        yield routers
    finally:
        routers.stop_all()


def cli(api: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshrouter.cli", "--api", api, *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_page_picture_and_explain_of_a_running_mesh(fleet: RouterFleet, tmp_path: Path) -> None:
    a = fleet.launch("alpha")
    b = fleet.launch("bravo", [a.listen])
    wait_until(lambda: len(a.get("/status/peers")) == 2, 20, "bravo joins", a, b)

    page = httpx.get(f"http://{a.api}/", timeout=5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script>" in page.text and "http" not in page.text.split("<script>")[1].lower()

    picture = httpx.get(f"http://{a.api}/graph.svg", timeout=5)
    assert picture.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(picture.text)
    drawn = {g.get("data-name") for g in root.iter("{http://www.w3.org/2000/svg}g")
             if g.get("data-name")}
    assert drawn == {row["name"] for row in a.get("/status/peers")}

    # a cross-origin page may not read it (the API guard)
    refused = httpx.get(f"http://{a.api}/graph.svg", headers={"Origin": "http://evil.example"},
                        timeout=5)
    assert refused.status_code == 403

    target = tmp_path / "mesh.svg"
    context = click.Context(click.Command("status"), obj=a.api)
    save_graph(context, str(target))
    saved = ET.fromstring(target.read_text())
    assert {g.get("data-name") for g in saved.iter("{http://www.w3.org/2000/svg}g")
            if g.get("data-name")} == drawn
    assert not list(tmp_path.glob(".graph-*"))

    walked = cli(a.api, "explain", "web", "db")
    assert walked.returncode == 1, walked.stderr
    assert "FAIL endpoints" in walked.stdout
    assert walked.stdout.rstrip().endswith("first failing layer: endpoints")
    as_json = cli(a.api, "explain", "--json", "web", "db")
    assert json.loads(as_json.stdout)["failing"] == "endpoints"
    missing = httpx.get(f"http://{a.api}/explain?src=web", timeout=5)
    assert missing.status_code == 400 and "expected /explain?src=" in missing.json()["error"]

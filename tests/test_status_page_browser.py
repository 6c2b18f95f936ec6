"""The status page in a real headless browser (Debian's chromium) against a
running 3-router mesh: it loads with no console error, shows every peer, and
a screenshot is kept under the test's tmp directory (its path is printed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import RouterFleet, wait_until

pytestmark = pytest.mark.processes

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# A console message as chromium logs it with --enable-logging=stderr (every level
# is logged as INFO, so any message counts: the page itself never logs).
CONSOLE = re.compile(r":([A-Z]+):CONSOLE[(:]\d+\)?\] \"(.*)\", source: (.*)")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[RouterFleet]:
    routers = RouterFleet(tmp_path)
    try:
        yield routers
    finally:
        routers.stop_all()


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--disable-sync", "--disable-background-networking",
         "--disable-component-update", "--metrics-recording-only", "--mute-audio",
         f"--user-data-dir={profile}", "--enable-logging=stderr", "--log-level=0",
         "--virtual-time-budget=4000", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def console_messages(stderr: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in CONSOLE.finditer(stderr)]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_status_page_shows_the_mesh_without_console_errors(
    fleet: RouterFleet, tmp_path: Path
) -> None:
    a = fleet.launch("alpha")
    b = fleet.launch("bravo", [a.listen])
    c = fleet.launch("charlie", [a.listen])
    wait_until(lambda: len(a.get("/status/peers")) == 3 and all(
        len(r.get("/status/peers")) == 3 for r in (b, c)), 30, "3 peers", a, b, c)
    url = f"http://{a.api}/"

    dumped = chromium(tmp_path, "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    dom = dumped.stdout
    assert 'data-loaded="yes"' in dom, dom[:2000]
    assert 'data-graph="yes"' in dom  # the picture loaded as an image
    peers_table = dom[dom.index('id="peers"'):dom.index('id="connections-section"')]
    for router in (a, b, c):
        assert f"<td>{router.nickname}</td>" in peers_table, peers_table
    names = {row["name"] for row in a.get("/status/peers")}
    for name in names:
        assert f"<td>{name}</td>" in peers_table
    assert peers_table.count("<td>direct</td>") == 2
    assert '<div id="error" role="alert"></div>' in dom  # no refresh failure shown
    assert console_messages(dumped.stderr) == []

    shot = tmp_path / "status-page.png"
    taken = chromium(tmp_path, "--window-size=1400,1000", f"--screenshot={shot}", url)
    assert taken.returncode == 0 and shot.stat().st_size > 10_000, taken.stderr[-3000:]
    assert console_messages(taken.stderr) == []
    print(f"status page screenshot: {shot}")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_a_console_error_is_seen(tmp_path: Path) -> None:
    """The console check itself can fail: a page that throws is reported."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><head><link rel='icon' href='data:,'></head>"
                    "<body><script>undefinedFunction();</script></body></html>")
    result = chromium(tmp_path, "--dump-dom", page.as_uri())
    problems = console_messages(result.stderr)
    assert any("undefinedFunction" in text for _, text in problems), result.stderr[-2000:]

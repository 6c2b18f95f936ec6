"""``meshrouter demo`` end to end, as a user runs it (a subprocess, as root), and
what it leaves behind: nothing -- after a normal run, after Ctrl-C halfway, and
a killed run's leftovers are swept by the next run, which still passes; a kept
lab can be looked at from here and ``--clean`` removes it.

The leftover oracle looks at the machine directly (``ip netns list``,
``/etc/netns``, the root namespace's links, every process's command line) and
never asks the demo's own code.  Skipped with the reason where the demo cannot
run (not root, no OVS)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshrouter.demo.preflight import missing_requirements
from meshrouter.demo.sweep import sweep

REPO = Path(__file__).resolve().parents[1]
NEEDS = missing_requirements()
lab_only = pytest.mark.skipif(bool(NEEDS), reason="; ".join(NEEDS) or "ready")


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                         check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                         check=False).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _processes_naming(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in line:
            found.append(f"{entry.name}: {line[:120]}")
    return found


def leftovers(state_dir: Path, run_id: str, links_before: set[str]) -> list[str]:
    prefix = f"mrdemo-{run_id}-"
    left = [f"netns {n}" for n in _netns() if n.startswith(prefix)]
    etc = Path("/etc/netns")
    left += [f"/etc/netns/{p.name}" for p in etc.glob(f"{prefix}*")] if etc.is_dir() else []
    left += [f"link {n}" for n in _root_links() - links_before]
    left += [f"process {p}" for p in _processes_naming(str(state_dir))]
    left += [f"run dir {state_dir / run_id}"] if (state_dir / run_id).exists() else []
    return left


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A short private state directory (OVS unix socket paths are capped)."""
    path = Path(tempfile.mkdtemp(prefix="mrdt-", dir="/tmp"))
    try:
        yield path
    finally:
        # whatever a failing test left, by the demo's prefix and pidfiles; if that
        # fails too, keep the directory: its pidfiles are how to find what is left
        result = sweep(path)
        if not result.left and not any(p.is_dir() for p in path.iterdir()):
            shutil.rmtree(path, ignore_errors=True)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _demo(state_dir: Path, *extra: str, sigint_ignored: bool = False) -> subprocess.Popen[str]:
    """The demo in a child; ``sigint_ignored`` starts it as a script's background
    job is started (SIGINT ignored), where Ctrl-C must still remove the lab."""
    return subprocess.Popen(
        [sys.executable, "-m", "meshrouter.cli", "demo", "--state-dir", str(state_dir), *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=_ignore_sigint if sigint_ignored else None)


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float = 120) -> str:
    """Output up to the line containing ``marker`` (the demo is then that far)."""
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    process.kill()
    raise AssertionError(f"the demo never printed {marker!r}:\n{''.join(seen)}")


def _run_id(output: str) -> str:
    found = re.search(r"meshrouter demo run ([0-9a-f]{6}):", output)
    assert found, output
    return found.group(1)


pytestmark = [pytest.mark.timeout(600)]


@lab_only
def test_kept_lab_answers_from_here_and_clean_removes_it(state_dir: Path) -> None:
    """``--keep``: every check passes, the lab stays up, the printed status page URL
    answers from the root namespace and a printed command works; ``--clean`` then
    leaves nothing.  (A run without --keep is judged in the next test.)"""
    links = _root_links()
    process = _demo(state_dir, "--keep")
    output, _ = process.communicate(timeout=400)
    assert process.returncode == 0, output
    assert "6 of 6 checks passed" in output, output
    for claim in ("pairs ping by name", "DNS load balancing", "relayed path",
                  "direct path again", "graph.svg"):
        assert claim in output, output
    run_id = _run_id(output)
    assert f"netns mrdemo-{run_id}-h1" in str(leftovers(state_dir, run_id, links))
    page = re.search(r"status page (http://127\.0\.0\.1:\d+/) ", output)
    assert page, output
    with urllib.request.urlopen(page.group(1) + "graph.svg", timeout=10) as answer:
        assert b"<svg" in answer.read()
    ping = re.search(r"  (ip netns exec \S+ ping -c 3 db-3)", output)
    assert ping, output
    done = subprocess.run(ping.group(1).replace("-c 3", "-c 1").split(), capture_output=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done
    cleaned = subprocess.run([sys.executable, "-m", "meshrouter.cli", "demo", "--clean",
                              "--state-dir", str(state_dir)], capture_output=True, text=True,
                             timeout=120, check=False)
    assert cleaned.returncode == 0 and run_id in cleaned.stdout, cleaned
    assert leftovers(state_dir, run_id, links) == []


@lab_only
def test_interrupted_and_killed_runs_leave_nothing_and_the_next_run_passes(
        state_dir: Path) -> None:
    links = _root_links()
    # Ctrl-C halfway: routers and their OVS daemons run, containers are being attached
    process = _demo(state_dir, sigint_ignored=True)
    head = _read_until(process, "routers meshed")
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 130, head + rest
    assert "interrupted" in rest, rest
    assert leftovers(state_dir, _run_id(head), links) == []
    # kill -9 halfway: no cleanup can run, so the leftovers stay ...
    process = _demo(state_dir)
    head = _read_until(process, "routers meshed")
    process.kill()
    process.wait(timeout=30)
    killed = _run_id(head)
    assert leftovers(state_dir, killed, links) != []
    # ... until the next run sweeps them, and it passes
    process = _demo(state_dir)
    output, _ = process.communicate(timeout=400)
    assert f"removed what earlier demo runs left: {killed}" in output, output
    assert process.returncode == 0, output
    assert "6 of 6 checks passed" in output, output
    assert leftovers(state_dir, killed, links) == []
    assert leftovers(state_dir, _run_id(output), links) == []


def test_a_dead_runs_directory_is_swept_and_a_live_one_is_left(tmp_path: Path) -> None:
    """Without root: the pidfile logic of the sweep on fake run directories."""
    dead, live = tmp_path / "aaaaaa", tmp_path / "bbbbbb"
    for run in (dead, live):
        (run / "h1").mkdir(parents=True)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    (dead / "demo.pid").write_text("999999999\n")  # no such process
    (dead / "h1" / "router.pid").write_text(f"{child.pid}\n")  # alive but not naming the dir
    live_owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                                   "meshrouter", "demo"])
    (live / "demo.pid").write_text(f"{live_owner.pid}\n")
    try:
        result = sweep(tmp_path)
        assert result.removed == ["aaaaaa"] and result.running == ["bbbbbb"]
        assert not dead.exists() and live.exists()
        assert child.poll() is None, "a PID whose command line does not name the run was ended"
    finally:
        for p in (child, live_owner):
            p.kill()
            p.wait()


def test_the_forwarder_carries_both_ways_through_an_inherited_socket() -> None:
    """Without root or namespaces: a listener made here, handed over by fd, reaches
    the target; a second connection works too (the forwarder keeps accepting)."""
    import socketserver
    import threading

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data = self.request.recv(1024)
            self.request.sendall(b"echo:" + data)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    port = listener.getsockname()[1]
    forward = subprocess.Popen(
        [sys.executable, "-m", "meshrouter.demo.forward", "--fd", str(listener.fileno()),
         "--to", f"127.0.0.1:{server.server_address[1]}", "--run", "/nonexistent"],
        pass_fds=(listener.fileno(),), cwd=REPO)
    listener.close()
    try:
        for word in (b"one", b"two"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(word)
                c.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := c.recv(1024):
                    got += chunk
            assert got == b"echo:" + word
    finally:
        forward.kill()
        forward.wait()
        server.shutdown()
        server.server_close()

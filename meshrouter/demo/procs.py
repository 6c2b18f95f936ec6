"""Processes of the demo: running tools, and finding and ending only what we started.

Every process the demo ends is named by a pidfile under the demo's own run
directory *and* has that directory in its command line (a recycled PID is never
ours), or runs inside a network namespace the demo created.  Nothing is ever
matched by a program name alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from meshrouter.errors import DemoError

TOOL_TIMEOUT = 30.0


def sh(*argv: str, check: bool = True, timeout: float = TOOL_TIMEOUT,
       input_text: str | None = None) -> str:
    """Run a tool; its stdout, or DemoError naming the command and its complaint."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                check=False, input=input_text)
    except subprocess.TimeoutExpired:
        raise DemoError(f"{' '.join(argv)}: no answer within {timeout:g} s") from None
    except OSError as exc:
        raise DemoError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    if check and result.returncode != 0:
        why = result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}"
        raise DemoError(f"{' '.join(argv)}: {why}")
    return result.stdout


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0:1]
    return bool(state) and state[0] not in ("Z", "X")


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def pids_from_files(pidfiles: Iterable[Path], marker: str) -> list[int]:
    """Live PIDs named by ``pidfiles`` whose command line contains ``marker``
    (our run directory): a PID the kernel gave to someone else is skipped."""
    found = []
    for pidfile in pidfiles:
        pid = read_pid(pidfile)
        if pid is not None and alive(pid) and marker in cmdline(pid):
            found.append(pid)
    return found


def netns_pids(namespace: str) -> list[int]:
    """PIDs of processes inside ``namespace`` (one the demo created)."""
    out = sh("ip", "netns", "pids", namespace, check=False, timeout=10)
    return [int(word) for word in out.split() if word.isdigit()]


def end(pids: Sequence[int], grace: float = 5.0) -> list[int]:
    """SIGTERM, wait up to ``grace``, then SIGKILL; returns the PIDs that survived."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 3.0)):
        for pid in pids:
            if alive(pid):
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)
    return [p for p in pids if alive(p)]

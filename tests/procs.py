"""Start and stop real ``meshrouter launch peer`` processes on 127.0.0.1 for tests.

Routers bind port 0 for both the mesh and the API, and the ports they got are
read back from ``<data-dir>/addresses.json`` (written by the router after both
sockets are bound, naming its pid), so no test races another process for a
"free" port.  Only processes started here are ever signalled, by PID; every one
is killed in ``stop_all`` even when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

# Container addresses for test routers: from the benchmarking range, which no
# test host routes, so the launch-time overlap check never trips on CI.
TEST_RANGE = "198.18.0.0/20"
ADDRESSES_FILE = "addresses.json"  # written by ``launch peer`` (meshrouter/cli/launch.py)


@dataclass
class RouterProcess:
    nickname: str
    listen: str
    api: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def get(self, path: str) -> Any:
        return httpx.get(f"http://{self.api}{path}", timeout=5).json()

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(
            f"http://{self.api}{path}",
            content=b"" if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            timeout=5,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            self.process.wait(timeout=10)


@dataclass
class RouterFleet:
    tmp: Path
    routers: list[RouterProcess] = field(default_factory=list)

    def launch(
        self,
        nickname: str,
        peers: list[str] = [],  # noqa: B006 - read only
        *,
        password: str | None = None,
        extra: list[str] = [],  # noqa: B006 - read only
        nofile: int | None = None,
    ) -> RouterProcess:
        """Start a router; ``nofile`` lowers its open-file limit (``ulimit -n``)."""
        data_dir = self.tmp / nickname
        log_path = self.tmp / f"{nickname}.log"
        args = [
            sys.executable,
            "-m",
            "meshrouter.cli",
            "launch",
            "peer",
            "--listen",
            "127.0.0.1:0",
            "--api",
            "127.0.0.1:0",
            "--data-dir",
            str(data_dir),
            "--nickname",
            nickname,
            "--heartbeat-interval",
            "0.5",
            "--heartbeat-timeout",
            "2",
            "--gossip-interval",
            "5",
            *([] if "--ipalloc-range" in extra else ["--ipalloc-range", TEST_RANGE]),
            # On the test machine itself: no OVS (it would take over the host's
            # underlay device), and DNS on a free loopback port only.
            *([] if "--datapath" in extra else ["--datapath", "none"]),
            *([] if "--dns-listen" in extra or "--no-dns" in extra
              else ["--dns-listen", "127.0.0.1:0"]),
            *extra,
            *peers,
        ]
        if password is not None:
            pw_file = self.tmp / f"{nickname}.pw"
            pw_file.write_text(password + "\n")
            args[5:5] = ["--password-file", str(pw_file)]
        env = dict(os.environ)
        env.pop("MESHROUTER_PASSWORD", None)
        (data_dir / ADDRESSES_FILE).unlink(missing_ok=True)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=None if nofile is None else _limit_files(nofile),
            )
        router = RouterProcess(nickname, "", "", data_dir, process, log_path)
        self.routers.append(router)
        addresses: dict[str, Any] = {}

        def bound() -> bool:
            addresses.update(read_addresses(router))
            return bool(addresses)

        wait_until(bound, 20, f"{nickname} to write {ADDRESSES_FILE}", router)
        router.listen, router.api = addresses["listen"], addresses["api"]
        wait_until(lambda: _api_up(router), 20, f"{nickname} API up", router)
        return router

    def stop_all(self) -> None:
        for router in self.routers:
            if router.process.poll() is None:
                os.kill(router.process.pid, signal.SIGTERM)
        for router in self.routers:
            try:
                router.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(router.process.pid, signal.SIGKILL)
                router.process.wait(timeout=10)


def _limit_files(limit: int) -> Callable[[], None]:
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def read_addresses(router: RouterProcess) -> dict[str, Any]:
    """The addresses ``router``'s process published, or {} while it has not
    (a file left by an earlier process of the same data dir names another pid)."""
    if router.process.poll() is not None:
        raise AssertionError(f"{router.nickname} exited:\n{router.log()}")
    try:
        record = json.loads((router.data_dir / ADDRESSES_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return record if record.get("pid") == router.process.pid else {}


def _api_up(router: RouterProcess) -> bool:
    if router.process.poll() is not None:
        raise AssertionError(f"{router.nickname} exited:\n{router.log()}")
    try:
        router.get("/status")
        return True
    except httpx.HTTPError:
        return False


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, *routers: RouterProcess
) -> float:
    """Poll ``predicate``; return the seconds it took, or fail with the routers' logs."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    logs = "\n".join(f"--- {r.nickname}\n{r.log()}" for r in routers)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")

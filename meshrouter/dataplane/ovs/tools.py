"""Running the OVS command-line tools (ovs-vsctl, ovs-ofctl, ovs-appctl) from trio.

Why the tools and not OVSDB/OpenFlow from Python: they are the interface OVS
documents and tests, ``ovs-ofctl --bundle`` gives atomic multi-flow transactions
for free, and the lab measured them fast enough (10,000 flows in ~95 ms,
ovs-lab/NOTES.md section 5).  Every call has a timeout and a capped output, and a
failure becomes ``OvsToolError`` (an ``UnavailableError``: OVS may come back).

Which OVS a tool talks to is decided by ``OVS_RUNDIR`` (where ``ovs-ofctl`` finds
``<bridge>.mgmt`` and ``ovs-appctl`` the daemons' control sockets) and by
``--db`` for ovs-vsctl.  The same object therefore drives the system OVS, the
router's own daemons under its data dir, or one lab host's private OVS: the tools
talk over unix sockets and need no network namespace.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trio

from meshrouter.errors import UnavailableError

MAX_OUTPUT = 64 * 1024 * 1024
"""A dump of a very large flow table still fits; anything beyond is an error."""


class OvsToolError(UnavailableError):
    """An OVS tool failed or timed out; the message carries its stderr."""

    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode


@dataclass(frozen=True, slots=True)
class OvsTools:
    """The OVS instance behind ``db_socket`` / ``rundir``."""

    db_socket: str
    rundir: str
    timeout: float = 10.0
    protocols: str = "OpenFlow13"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["OVS_RUNDIR"] = self.rundir
        return env

    async def run(
        self, argv: list[str], *, stdin: bytes | None = None, limit: float | None = None
    ) -> str:
        """Run one tool; return its stdout (text) or raise ``OvsToolError``."""
        limit = self.timeout if limit is None else limit
        try:
            with trio.fail_after(limit):
                result = await trio.run_process(
                    argv,
                    stdin=stdin if stdin is not None else b"",
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                    env=self.env(),
                )
        except trio.TooSlowError:
            raise OvsToolError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''}: timed out "
                               f"after {limit:g} s") from None
        except OSError as exc:
            raise OvsToolError(f"cannot run {argv[0]}: {exc.strerror}") from None
        out: bytes = result.stdout or b""
        if len(out) > MAX_OUTPUT:
            raise OvsToolError(f"{argv[0]}: output larger than {MAX_OUTPUT} bytes")
        if result.returncode != 0:
            err = (result.stderr or b"").decode(errors="replace").strip()
            last = err.splitlines()[-1] if err else f"exit status {result.returncode}"
            raise OvsToolError(f"{' '.join(argv[:3])}: {last}", result.returncode)
        return out.decode(errors="replace")

    async def vsctl(self, *args: str, limit: float | None = None) -> str:
        """``ovs-vsctl`` with a server-side timeout, so a dead vswitchd cannot hang it."""
        wait = int(self.timeout if limit is None else limit)
        argv = ["ovs-vsctl", f"--db=unix:{self.db_socket}", f"--timeout={max(1, wait)}", *args]
        return await self.run(argv, limit=wait + 2)

    async def vsctl_nowait(self, *args: str) -> str:
        """``ovs-vsctl --no-wait``: only the database, no vswitchd needed."""
        return await self.vsctl("--no-wait", *args)

    async def ofctl(self, *args: str, stdin: bytes | None = None) -> str:
        return await self.run(["ovs-ofctl", "-O", self.protocols, *args], stdin=stdin)

    async def appctl(self, target: str, *args: str, limit: float | None = None) -> str:
        wait = limit or self.timeout
        return await self.run(
            ["ovs-appctl", f"--timeout={int(wait)}", "-t", target, *args], limit=wait + 2
        )

    async def db_answers(self) -> bool:
        """Whether an ovsdb-server answers on our socket (fast, never raises)."""
        if not os.path.exists(self.db_socket):  # noqa: ASYNC240 - one stat, no I/O wait
            return False
        try:
            await self.run(
                ["ovs-vsctl", f"--db=unix:{self.db_socket}", "--timeout=2", "--no-wait",
                 "get", "Open_vSwitch", ".", "ovs_version"],
                limit=4,
            )
        except OvsToolError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: our daemons may be reparented to a
    PID 1 that never reaps them)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0:1]
    return bool(state) and state[0] not in ("Z", "X")


def read_pidfile(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

"""The router's own ovsdb-server and ovs-vswitchd, when no OVS is installed as a service.

Layout (ovs-lab/NOTES.md section 1): ``<data-dir>/ovs/{run,db,log,etc}``, the
database created from the installed schema, ``OVS_RUNDIR`` pointing the tools at
``run/``.  The daemons start with ``--detach``: the launching process exits only
once the daemon is initialised, which is our readiness signal, and a daemon
survives a router crash, so a restarted router *adopts* it (pidfile + /proc)
instead of interrupting the data path.  They run in the switch's network
namespace (``ip netns exec NAME`` or ``nsenter --net=PATH``), because vswitchd's
netdev ports, taps and routes belong to the namespace it runs in.

We stop (and restart) only the PIDs our pidfiles name, and only after checking
that the process's command line points at our run directory.

Priority.  ovs-vswitchd starts at nice ``nice`` (default -10, what OVS's own
``ovs-ctl`` gives it), so the userspace datapath is not starved by the
containers it forwards for.  Where the kernel groups processes by session
(``autogroup``, common outside systemd services) a process's nice counts only
inside its group, and vswitchd's ``--detach`` starts a session of its own, so
that group's nice is set too (``/proc/PID/autogroup``).  Measured on the shared
lab machine at load 10: vswitchd was runnable but waiting for a CPU 55-60 % of
the time and moved 0.37-0.46 Gbit/s; with its group at -10 it waited 24 % and
moved 0.73-0.75.  Without the privilege (CAP_SYS_NICE), it runs at the
default priority.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import trio

from meshrouter.dataplane.ovs.settings import SCHEMA, SYSTEM_DB_SOCKET, OvsSettings
from meshrouter.dataplane.ovs.tools import OvsToolError, OvsTools, pid_alive, read_pidfile
from meshrouter.errors import ConfigError

log = logging.getLogger(__name__)

DAEMONS = ("ovsdb-server", "ovs-vswitchd")


def netns_prefix(netns: str | None) -> list[str]:
    """The command prefix that runs a program in ``netns`` (None: ours)."""
    if netns is None:
        return []
    if "/" in netns:
        return ["nsenter", f"--net={netns}", "--"]
    return ["ip", "netns", "exec", netns]


class OwnDaemons:
    """Start, adopt, supervise and stop one private OVS instance under ``base``."""

    def __init__(self, base: Path, *, netns: str | None, handler_threads: int | None,
                 nice: int | None = None) -> None:
        self.base = base
        self.netns = netns
        self.handler_threads = handler_threads
        self.nice = nice
        self.run_dir = base / "run"
        self.db_dir = base / "db"
        self.log_dir = base / "log"
        self.etc_dir = base / "etc"
        self.db_file = self.db_dir / "conf.db"
        self.db_socket = str(self.run_dir / "db.sock")
        if len(self.db_socket) > 100 or len(str(self.run_dir)) > 70:
            # unix socket paths are capped at 107 bytes, and vswitchd puts
            # "<bridge>.mgmt" and "ovs-vswitchd.<pid>.ctl" beside db.sock
            raise ConfigError(
                f"data directory {base.parent} is too long for OVS's unix sockets; "
                "use a shorter --data-dir"
            )
        self.tools = OvsTools(db_socket=self.db_socket, rundir=str(self.run_dir))
        self.restarts = 0

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            OVS_RUNDIR=str(self.run_dir),
            OVS_DBDIR=str(self.db_dir),
            OVS_LOGDIR=str(self.log_dir),
            OVS_SYSCONFDIR=str(self.etc_dir),
        )
        return env

    def pidfile(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.pid"

    def pid(self, daemon: str) -> int | None:
        """The PID of our ``daemon`` if it runs (and is really ours), else None."""
        pid = read_pidfile(self.pidfile(daemon))
        if pid is None or not pid_alive(pid):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return None
        if daemon not in cmdline or str(self.run_dir) not in cmdline:
            return None  # a recycled PID: not ours
        return pid

    async def _spawn(self, argv: list[str]) -> None:
        try:
            with trio.fail_after(30):
                result = await trio.run_process(
                    [*netns_prefix(self.netns), *argv],
                    capture_stdout=True, capture_stderr=True, check=False, env=self.env(),
                )
        except trio.TooSlowError:
            raise OvsToolError(f"{argv[0]} did not start within 30 s") from None
        except OSError as exc:
            raise OvsToolError(f"cannot run {argv[0]}: {exc.strerror}") from None
        if result.returncode != 0:
            err = result.stderr.decode(errors="replace").strip().splitlines()
            raise OvsToolError(f"{argv[0]} failed: {err[-1] if err else result.returncode}")

    async def ensure_db(self) -> None:
        for d in (self.run_dir, self.db_dir, self.log_dir, self.etc_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.db_file.exists():
            await self._spawn(["ovsdb-tool", "create", str(self.db_file), SCHEMA])

    async def start_ovsdb(self) -> bool:
        """Start ovsdb-server unless ours already runs; True if we started it."""
        if self.pid("ovsdb-server") is not None:
            return False
        await self.ensure_db()
        await self._spawn([
            "ovsdb-server", str(self.db_file),
            f"--remote=punix:{self.db_socket}",
            f"--pidfile={self.pidfile('ovsdb-server')}",
            f"--unixctl={self.run_dir / 'ovsdb-server.ctl'}",
            f"--log-file={self.log_dir / 'ovsdb-server.log'}",
            "--detach",
        ])
        await self.tools.vsctl_nowait("init")
        if self.handler_threads is not None:
            n = str(self.handler_threads)
            await self.tools.vsctl_nowait(
                "set", "Open_vSwitch", ".",
                f"other_config:n-handler-threads={n}", f"other_config:n-revalidator-threads={n}",
            )
        return True

    async def start_vswitchd(self) -> bool:
        """Start ovs-vswitchd unless ours already runs; True if we started it."""
        if self.pid("ovs-vswitchd") is not None:
            return False
        await self._spawn([
            *priority_prefix(self.nice),
            "ovs-vswitchd", f"unix:{self.db_socket}",
            f"--pidfile={self.pidfile('ovs-vswitchd')}",
            f"--log-file={self.log_dir / 'ovs-vswitchd.log'}",
            "--detach",
        ])
        pid = self.pid("ovs-vswitchd")
        if pid is not None and self.nice is not None:
            set_group_nice(pid, self.nice)
        return True

    async def stop(self, *, cleanup: bool = True) -> None:
        """Ask our daemons to exit (vswitchd first, removing its datapath), then
        SIGTERM/SIGKILL by PID whatever did not go."""
        for daemon in DAEMONS[::-1]:
            pid = self.pid(daemon)
            if pid is None:
                continue
            ctl = (self.run_dir / f"ovs-vswitchd.{pid}.ctl" if daemon == "ovs-vswitchd"
                   else self.run_dir / "ovsdb-server.ctl")
            args = ["exit", "--cleanup"] if cleanup and daemon == "ovs-vswitchd" else ["exit"]
            try:
                await self.tools.appctl(str(ctl), *args, limit=5)
            except OvsToolError as exc:
                log.warning("%s (pid %d) did not take exit: %s", daemon, pid, exc)
            await self._wait_gone(daemon, pid)

    async def _wait_gone(self, daemon: str, pid: int) -> None:
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self.pid(daemon) == pid:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    return
            for _ in range(50):
                if not pid_alive(pid):
                    return
                await trio.sleep(0.1)
        log.error("%s (pid %d) would not die", daemon, pid)


def priority_prefix(nice: int | None, ours: int | None = None) -> list[str]:
    """The command prefix that starts a program at the absolute nice ``nice``
    (None: as we run).  ``nice(1)`` adds to the caller's own nice (``ours``, read
    when not given), so a router that was itself started niced still gets its
    vswitchd to ``nice``.  ``nice(1)`` runs the program even when it may not
    raise its priority."""
    if nice is None:
        return []
    if ours is None:
        ours = os.getpriority(os.PRIO_PROCESS, 0)
    return ["nice", "-n", str(nice - ours)]


def set_group_nice(pid: int, nice: int) -> bool:
    """Give ``pid``'s scheduling autogroup the nice ``nice``, where the kernel has
    autogroups (see the module doc); False where it has none or we may not."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError as exc:
        log.debug("autogroup nice of %d not set: %s", pid, exc)
        return False
    return True


async def choose_ovs(s: OvsSettings) -> tuple[OvsTools, OwnDaemons | None]:
    """The OVS to drive: the one on ``--ovs-db`` (default the system's), or our own
    daemons under the data dir when asked, or when none answers there.  The
    socket of our own daemons is ours to run, restart and stop, even when a
    previous run left them answering."""
    socket_path = s.db_socket or SYSTEM_DB_SOCKET
    external = OvsTools(db_socket=socket_path, rundir=str(Path(socket_path).parent),
                        timeout=s.tool_timeout)
    ours = _same_path(socket_path, str(s.ovs_dir / "run" / "db.sock"))
    if s.own_daemons == "never" or (
        not ours and s.own_daemons == "auto" and await external.db_answers()
    ):
        return external, None
    daemons = OwnDaemons(s.ovs_dir, netns=s.netns, handler_threads=s.handler_threads,
                         nice=s.vswitchd_nice)
    return daemons.tools, daemons


def _same_path(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)

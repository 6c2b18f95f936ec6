"""The Datapath interface: what forwards container packets on this host.

Injected into the Router like ``Transport`` and ``Storage``, so production (Open
vSwitch), the simulator (the memory datapath that evaluates the same flow
tables) and control-plane-only routers (``NullDatapath``) are built the same way.
The Router only runs it and lends it to its services; the dataplane service
decides what to program (``apply``) and which container ports exist
(``attach_port``/``detach_port``).

Implementations never raise from ``run`` for a datapath fault: they report it in
``health()`` (degraded, with the reason) and restore their state themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from meshrouter.errors import UnavailableError


@dataclass(frozen=True, slots=True)
class DatapathHealth:
    """``ok`` is False while the datapath cannot forward as programmed; ``reason`` says why."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PortRequest:
    """A container port to create: a veth end in ``netns`` (name, path or PID)."""

    container_id: str
    netns: str
    ifname: str
    mac: str
    cidr: str
    gateway: str | None = None
    mtu: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LocalPort:
    """A container port as the datapath made it: its switch port number and names."""

    container_id: str
    port: int
    host_ifname: str
    mac: str
    mtu: int


class Datapath(Protocol):
    """A host's packet forwarding, programmed by the dataplane service."""

    kind: str
    """``none``, ``memory``, ``ovs-netdev``, ``ovs-system``."""

    on_port_lost: Callable[[str], None] | None
    """Told the container ID of a port whose namespace vanished under us (the
    dataplane service sets it, and takes the container's endpoint out)."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start (or connect to) the switch, then supervise it until cancelled."""
        ...

    async def apply(self, flows: Sequence[Any]) -> None:
        """Make the switch's flow table equal to ``flows`` (the desired table);
        an implementation sends only the difference from what it installed."""
        ...

    async def attach_port(self, request: PortRequest) -> LocalPort: ...

    async def detach_port(self, container_id: str) -> None: ...

    attach_marks: dict[str, list[tuple[str, float]]]
    """Per container, the steps of its last attach (``time.monotonic()`` marks): the
    latency breakdown ``GET /status/dataplane/timings`` shows.  Empty where the
    datapath does not time its steps."""

    async def announce(self, endpoints: Sequence[tuple[str, str]],
                       skip: str | None = None) -> int:
        """Tell local containers (but ``skip``) that these (mac, ip) endpoints are
        reachable now (gratuitous ARP), so one that asked too early does not wait
        for its ARP retry.  Returns the frames sent; 0 where there is nothing to do."""
        ...

    def health(self) -> DatapathHealth: ...

    def status(self) -> dict[str, Any]: ...


class NullDatapath:
    """No datapath (``--datapath none``): the control plane alone."""

    kind = "none"
    on_port_lost: Callable[[str], None] | None = None

    def __init__(self) -> None:
        self.attach_marks: dict[str, list[tuple[str, float]]] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def apply(self, flows: Sequence[Any]) -> None:
        return None

    async def attach_port(self, request: PortRequest) -> LocalPort:
        raise UnavailableError(
            "this router runs without a datapath (--datapath none); "
            "start it with --datapath ovs to attach containers"
        )

    async def detach_port(self, container_id: str) -> None:
        return None

    async def announce(self, endpoints: Sequence[tuple[str, str]],
                       skip: str | None = None) -> int:
        return 0

    def health(self) -> DatapathHealth:
        return DatapathHealth(ok=True, reason="no datapath")

    def status(self) -> dict[str, Any]:
        return {"type": "none", "health": "ok"}

"""The memory datapath: a host's switch for the simulator and the tests.

It implements ``meshrouter.node.datapath.Datapath`` with no I/O: ``apply``
keeps the desired table (and counts the delta an OVS shell would send),
``attach_port`` numbers ports as the OVS shell does, and ``process`` runs a
packet through the installed flows with the pure evaluator, so the simulator
checks the very flows production installs.  Faults are injected by tests
(``fail``/``recover``, ``attach_error``), the way a dying vswitchd or a
vanished namespace would show: in ``health``, never as an exception from
``run``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import trio

from meshrouter.dataplane.core.delta import FlowKey, diff, index
from meshrouter.dataplane.core.evaluate import CompiledTable, Emission, Packet
from meshrouter.dataplane.core.flow import Flow
from meshrouter.dataplane.core.pipeline import FIRST_CONTAINER_PORT
from meshrouter.errors import ConflictError, InvalidRequestError, UnavailableError
from meshrouter.node.datapath import DatapathHealth, LocalPort, PortRequest

DEFAULT_MTU = 1450


class MemoryDatapath:
    """A switch that exists only as a flow table and a port map."""

    kind = "memory"

    def __init__(self, *, mtu: int = DEFAULT_MTU,
                 on_port_lost: Callable[[str], None] | None = None) -> None:
        """``on_port_lost`` is told the container ID of a port that vanished (as
        the OVS datapath does when a container's namespace is deleted)."""
        self.mtu = mtu
        self.on_port_lost = on_port_lost
        self.ports: dict[str, LocalPort] = {}
        self.requests: dict[str, PortRequest] = {}
        self.desired: dict[FlowKey, Flow] = {}
        self.installed: dict[FlowKey, Flow] = {}
        self.compiled = CompiledTable(())
        self.applies = 0
        self.flow_mods = 0
        """Adds plus deletes an OVS shell would have sent, summed over applies."""
        self.last_delta = 0
        self.attach_error: Exception | None = None
        """Raised by the next ``attach_port`` (then cleared): a fault injection."""
        self._health = DatapathHealth(ok=True)
        self.attach_marks: dict[str, list[tuple[str, float]]] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()

    async def apply(self, flows: Sequence[Any]) -> None:
        table = index(f for f in flows if isinstance(f, Flow))
        if len(table) != len(flows):
            raise TypeError("the memory datapath takes core.flow.Flow values with unique keys")
        self.desired = table
        self.applies += 1
        if self._health.ok:
            self._install()

    def _install(self) -> None:
        delta = diff(self.installed, self.desired)
        self.last_delta = len(delta)
        self.flow_mods += len(delta)
        if not delta.is_empty():
            self.installed = dict(self.desired)
            self.compiled = CompiledTable(self.installed.values())

    async def announce(self, endpoints: Sequence[tuple[str, str]],
                       skip: str | None = None) -> int:
        """Nothing to announce: simulated containers have no ARP cache to wait on."""
        return 0

    async def attach_port(self, request: PortRequest) -> LocalPort:
        if self.attach_error is not None:
            error, self.attach_error = self.attach_error, None
            raise error
        if not self._health.ok:
            raise UnavailableError(f"datapath degraded: {self._health.reason}")
        if not request.container_id:
            raise InvalidRequestError("container ID must not be empty")
        mac = request.mac.lower()
        for other in self.ports.values():
            if other.container_id != request.container_id and other.mac == mac:
                raise ConflictError(f"MAC {mac} is already used by container "
                                    f"{other.container_id}")
        existing = self.ports.get(request.container_id)
        if existing is not None:
            return existing
        used = {p.port for p in self.ports.values()}
        number = FIRST_CONTAINER_PORT
        while number in used:
            number += 1
        port = LocalPort(request.container_id, number, f"mr{number}", mac,
                         request.mtu or self.mtu)
        self.ports[request.container_id] = port
        self.requests[request.container_id] = request
        return port

    async def detach_port(self, container_id: str) -> None:
        self.ports.pop(container_id, None)
        self.requests.pop(container_id, None)

    def process(self, packet: Packet) -> list[Emission]:
        """What the installed flows do with ``packet``."""
        return self.compiled.process(packet)

    def vanish(self, container_id: str) -> None:
        """Simulate a deleted namespace: the port is gone, and we say so."""
        if self.ports.pop(container_id, None) is not None:
            self.requests.pop(container_id, None)
            if self.on_port_lost is not None:
                self.on_port_lost(container_id)

    def fail(self, reason: str) -> None:
        """Simulate a switch fault: degraded health, an empty flow table."""
        self._health = DatapathHealth(ok=False, reason=reason)
        self.installed = {}
        self.compiled = CompiledTable(())

    def recover(self) -> None:
        """The switch is back: reinstall the desired table by ourselves."""
        self._health = DatapathHealth(ok=True)
        self._install()

    def health(self) -> DatapathHealth:
        return self._health

    def status(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "flows": len(self.installed),
            "flows_desired": len(self.desired),
            "health": "ok" if self._health.ok else "degraded",
            "reason": self._health.reason,
            "ports": len(self.ports),
            "applies": self.applies,
            "flow_mods": self.flow_mods,
        }

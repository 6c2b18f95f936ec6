"""The expose Service: the host's own address on the overlay (``weave expose``).

``meshrouter expose [--ip CIDR]`` (``POST /expose``) attaches the host's own
network namespace through the dataplane service, as the container
``host-<peer name>`` with interface ``mr-expose``: an address from IPAM (or
the one given, claimed), a port on the integration bridge, an endpoint in the
gossiped table, and the prefix's route to the overlay on the host.  ``meshrouter
hide`` (``DELETE /expose``) detaches it, which releases the address.  The DNS
service is told the address (``set_exposed``): by default it listens there
too, and that is the nameserver containers are given.

Automatic exposure.  While the user has neither exposed nor hidden the host,
the router exposes it by itself when the datapath is OVS and DNS serves by
default (no ``--no-dns``, no ``--dns-listen``), as soon as an address ring
exists -- never founding one (see ``state.auto_wanted``).  ``hide`` is
remembered, so a restart does not expose again.

Restarts.  The dataplane service re-creates its ports at start (the port
request is in its state file, with the address); this service re-asserts
what its own state says: an exposed host whose port could not be restored is
attached again with the same address (claimed), a hidden host that still has
a port is detached.  A port that vanishes later (``ip link del mr-expose``)
is re-attached the same way at the next round.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

import trio

from meshrouter.endpoints.requests import AttachRequest
from meshrouter.errors import ConflictError, MeshError, UnavailableError
from meshrouter.node.service import ApiRequest, ApiRoute, ServiceBase, ServiceContext

from .state import (
    IFNAME,
    ExposeState,
    auto_wanted,
    host_container_id,
    parse_cidr,
    parse_expose_request,
    same_address,
)

log = logging.getLogger(__name__)

STATE_KEY = "expose"
OWN_NETNS = "/proc/self/ns/net"
"""The router's own namespace, as a path that stays true across restarts (the
dataplane saves it with the port; a PID would not)."""
QUICK = 1.0
RING_POLL = 0.25
"""While waiting for an address ring (automatic mode): the first container's
attach founds it, and its host should be exposed moments later."""
SLOW = 5.0
MAX_BACKOFF = 30.0


class Dataplane(Protocol):
    """What exposing needs of the dataplane service (``endpoints/service/``)."""

    attachments: Mapping[str, Any]

    async def attach_container(self, request: AttachRequest) -> dict[str, Any]: ...

    async def detach_container(self, container_id: str) -> dict[str, Any]: ...


class HostDns(Protocol):
    """What exposing needs of the DNS service (``dns/service.py``)."""

    exposed: str | None

    def wants_host_address(self) -> bool: ...

    async def set_exposed(self, cidr: str | None) -> None: ...


class ExposeService(ServiceBase):
    """The host's overlay address (see the module docstring)."""

    name = "expose"

    def __init__(self, *, auto: bool = True, netns: str = OWN_NETNS) -> None:
        """``auto=False`` never exposes by itself (only ``meshrouter expose``)."""
        self.auto = auto
        self.netns = netns
        self.state = ExposeState()
        self.error = ""
        self._failures = 0
        self._lock = trio.Lock()
        self._wakeup = trio.Event()

    def attach(self, context: ServiceContext) -> None:
        super().attach(context)
        self.container_id = host_container_id(context.name)

    def load(self) -> None:
        blob = self.context.storage.load(STATE_KEY)
        if blob is not None:
            self.state = ExposeState.decode(blob)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            async with self._lock:
                pending = await self._reconcile()
            pause = RING_POLL if pending else SLOW
            if self.error:
                pause = min(MAX_BACKOFF, QUICK * 2 ** min(self._failures, 5))
            with trio.move_on_after(pause):
                await self._wakeup.wait()
            self._wakeup = trio.Event()

    def on_topology_changed(self, change: Any) -> None:
        self.wake()  # a peer may have brought the address ring

    def wake(self) -> None:
        self._wakeup.set()

    # -- the services we work with ------------------------------------------------

    def _dataplane(self) -> Dataplane | None:
        found: Dataplane | None = self.context.service("dataplane", "attach_container")
        return found

    def _dns(self) -> HostDns | None:
        found: HostDns | None = self.context.service("dns", "set_exposed")
        return found

    def _ring_ready(self) -> bool:
        ipam = self.context.service("ipam", "status")
        return ipam is not None and ipam.status().get("state") == "ready"

    def _auto_allowed(self) -> bool:
        """Whether automatic mode wants the host exposed at all.  The ring is
        checked only before a new attach (``_reconcile``): an exposure restored
        at start stays while IPAM is still learning its ring."""
        dns = self._dns()
        return self.auto and auto_wanted(
            self.state, datapath_kind=self.context.datapath.kind,
            dns_wants=dns is not None and dns.wants_host_address(), ring_ready=True)

    # -- reconcile ----------------------------------------------------------------

    async def _reconcile(self) -> bool:
        """Make the port and DNS agree with the state; True while something waits."""
        dataplane = self._dataplane()
        if dataplane is None:
            return False
        attached = dataplane.attachments.get(self.container_id)
        mode = self.state.mode
        try:
            if mode == "hidden" or (mode == "auto" and not self._auto_allowed()):
                if attached is not None:
                    await self._detach(dataplane)
                await self._tell_dns(None)
            elif attached is not None:
                cidr = f"{attached.ip}/{attached.prefix}"
                if self.state.cidr != cidr:
                    self._save(ExposeState(mode, cidr, self.state.asked))
                await self._tell_dns(cidr)
            elif mode == "exposed" or self._ring_ready():
                await self._attach(dataplane, self.state.asked or self.state.cidr, mode,
                                   self.state.asked)
            else:
                return True  # auto, waiting for an address ring
        except MeshError as exc:
            if isinstance(exc, ConflictError) and self.state.asked is None and self.state.cidr:
                # The address we had went to someone else while we were down:
                # take a new one at the next round rather than insist.
                self._save(ExposeState(self.state.mode, None, None))
            self._failures += 1
            if str(exc) != self.error:
                log.warning("%s: expose: %s", self.context.label, exc)
            self.error = str(exc)
            return True
        self.error = ""
        self._failures = 0
        return False

    async def _attach(self, dataplane: Dataplane, cidr: str | None, mode: Any,
                      asked: str | None) -> dict[str, Any]:
        """Attach the host (``cidr``: that address, claimed; None: one from
        IPAM); the state is saved only once the port exists."""
        iface = parse_cidr(cidr) if cidr else None
        request = AttachRequest(
            container_id=self.container_id, netns=self.netns,
            ip=iface.ip if iface is not None else None,
            prefix=iface.network.prefixlen if iface is not None else None,
            ifname=IFNAME)
        view = await dataplane.attach_container(request)
        got = str(view["ip"])
        self._save(ExposeState(mode, got, asked))
        log.info("%s: host exposed on the overlay as %s (%s)", self.context.label, got, IFNAME)
        await self._tell_dns(got)
        return view

    async def _detach(self, dataplane: Dataplane) -> list[str]:
        released: list[str] = (await dataplane.detach_container(self.container_id))["released"]
        log.info("%s: host hidden from the overlay (released %s)", self.context.label,
                 ", ".join(released) or "nothing")
        return released

    async def _tell_dns(self, cidr: str | None) -> None:
        dns = self._dns()
        if dns is None:
            return
        if not same_address(dns.exposed, cidr):
            await dns.set_exposed(cidr)

    def _save(self, state: ExposeState) -> None:
        self.context.storage.save(STATE_KEY, state.encode())
        self.state = state

    # -- verbs ----------------------------------------------------------------------

    async def expose(self, asked: str | None) -> dict[str, Any]:
        """Give the host an address on the overlay (idempotent)."""
        async with self._lock:
            dataplane = self._dataplane()
            if dataplane is None:
                raise UnavailableError("this router has no dataplane: start it with "
                                       "--datapath ovs to expose the host")
            attached = dataplane.attachments.get(self.container_id)
            if attached is not None:
                if asked is not None and not same_address(asked, attached.ip):
                    raise ConflictError(f"the host is already exposed as {attached.ip}/"
                                        f"{attached.prefix}; `meshrouter hide` first to "
                                        "change its address")
                self._save(ExposeState("exposed", f"{attached.ip}/{attached.prefix}",
                                       asked or self.state.asked))
                await self._tell_dns(self.state.cidr)
            else:
                # Without --ip: the address the host had (a lost port, an
                # automatic exposure), else one from IPAM.
                await self._attach(dataplane, asked or self.state.cidr, "exposed", asked)
            self.error = ""
            self.wake()
            return self.summary()

    async def hide(self) -> dict[str, Any]:
        """Take the host off the overlay and release its address (idempotent)."""
        async with self._lock:
            # Saved first: a crash before the detach ends hidden at the next start.
            self._save(ExposeState("hidden", None, None))
            released: list[str] = []
            dataplane = self._dataplane()
            if dataplane is not None and self.container_id in dataplane.attachments:
                released = await self._detach(dataplane)
            await self._tell_dns(None)
            self.error = ""
            return {**self.summary(), "released": released}

    # -- status and API -------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        dataplane = self._dataplane()
        attached = dataplane.attachments.get(self.container_id) if dataplane else None
        if attached is not None:
            state = "exposed"
        elif self.state.mode == "hidden":
            state = "hidden"
        else:
            state = "not exposed"
        return {
            "state": state,
            "address": f"{attached.ip}/{attached.prefix}" if attached is not None else "",
            "interface": IFNAME,
            "container_id": self.container_id,
            "mode": self.state.mode,
            "auto": self.auto,
            # About to expose by itself (or to restore an exposure): meshrouter-cni
            # waits a moment for the DNS address of the first container of a fresh
            # mesh on this (request H6-1).  Not while an attempt keeps failing.
            "pending": attached is None and not self.error and (
                self.state.mode == "exposed" or self._auto_allowed()),
            "error": self.error,
        }

    def api_routes(self) -> list[ApiRoute]:
        return [
            ApiRoute("GET", "/status/expose", self._api_status),
            ApiRoute("POST", "/expose", self._api_expose),
            ApiRoute("DELETE", "/expose", self._api_hide),
        ]

    async def _api_status(self, request: ApiRequest) -> Any:
        return self.summary()

    async def _api_expose(self, request: ApiRequest) -> Any:
        return await self.expose(parse_expose_request(request.body))

    async def _api_hide(self, request: ApiRequest) -> Any:
        return await self.hide()

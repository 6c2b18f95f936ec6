"""The Service seam: how a feature plugs into a Router without the Router knowing it.

The Router owns the mesh (listener, dialer, connections, gossip, topology) and
nothing else.  Every feature -- IPAM, endpoints and the datapath, DNS, metrics --
is one sans-IO core plus one ``Service`` given to the Router at construction:

1. ``attach(context)`` (called once, from ``Router.__init__``): register gossip
   channels on ``context.gossip`` and keep what else of the context it needs.
2. ``load()`` (start of ``Router.run``): read persisted state; raise
   ``StateFileError`` to refuse to start.
3. ``run(task_status=...)`` (in the Router's nursery): its own tasks, cancelled
   with the router.
4. ``on_topology_changed(change)``: the one topology-change signal, delivered to
   every subscriber after each route computation.
5. ``cluster_id()``, ``summary()``, ``report()``: what the router is asked about
   itself (handshake identity, ``status``, ``report``).
6. ``api_routes()``: HTTP routes, mounted by the API server, which knows no
   service by name.  Handlers take an ``ApiRequest`` and return JSON-able data;
   they raise the error *kinds* of ``meshrouter.errors`` (never an HTTP code).

``ServiceBase`` gives no-op defaults, so a service writes only what it uses.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import trio

from meshrouter.names import PeerName

if TYPE_CHECKING:
    from meshrouter.gossip.core import GossipCore
    from meshrouter.node.datapath import Datapath
    from meshrouter.storage import Storage
    from meshrouter.topology.routes import Routes
    from meshrouter.topology.topology import Topology


@dataclass(frozen=True, slots=True)
class TopologyChange:
    """One step of the topology as every consumer sees it.

    ``routes`` is the freshly computed route table (never stale); ``removed``
    lists peers whose records were garbage-collected since the previous change,
    delivered to every subscriber (each sees each removal exactly once).
    """

    version: int
    routes: Routes
    removed: tuple[PeerName, ...] = ()

    def reachable(self) -> frozenset[PeerName]:
        """Peers we have a route to, ourselves included (computed once, on first use)."""
        return self.routes.reachable()


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """An HTTP request reduced to what a service handler needs (no HTTP types)."""

    path_params: Mapping[str, str]
    query: Mapping[str, str] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A handler's answer that is not JSON: a page, a picture, metrics text."""

    body: bytes
    content_type: str
    status: int = 200


ApiHandler = Callable[[ApiRequest], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One route a service mounts: ``path`` uses Starlette's syntax
    (``/ip/{container}``, ``{prefix:int}``); the handler's return value is sent
    as JSON with status 200, or as it is when it is a ``RawResponse``."""

    method: str
    path: str
    handler: ApiHandler


@dataclass(slots=True)
class ServiceContext:
    """What the Router lends its services.  The Router stays the owner of each."""

    name: PeerName
    uid: int
    nickname: str
    label: str
    gossip: GossipCore
    storage: Storage
    rng: random.Random
    topology: Topology
    datapath: Datapath
    reachable: Callable[[], AbstractSet[PeerName]]
    """Peers we have a route to, ourselves included."""
    peer_address: Callable[[PeerName], str | None]
    """The underlay host of a neighbour, as seen on its control connection."""
    stop_router: Callable[[], None]
    leave_mesh: Callable[[], None]
    """Forget the direct peers (persisted) and stop: ``reset``."""
    drain_gossip: Callable[[float], Awaitable[None]]
    services: Callable[[], list[Service]]
    """Every service of this router, so one may consult another (e.g. metrics)."""
    status: Any = None
    """The router's ``RouterStatus`` (node/status_rows.py, a shell above this
    interface, hence untyped here): the rows behind ``status``/``report`` --
    connections, refusals, targets, peers.  None in a context built without a
    Router (a benchmark of one service)."""
    subscribe_events: Callable[[Callable[[str, str], None]], None] = lambda subscriber: None
    """Be told each connection event ``(kind, detail)``: up, down, refused, dial-failed,
    peer-gone (the same events the simulator logs)."""

    def service(self, name: str, needs: str) -> Any:
        """The router's service called ``name`` that has the attribute ``needs`` (the
        one method the caller will use), or None: how one feature consults another
        without importing it (``ipam``/``allocate``, ``dns``/``set_exposed``...)."""
        for service in self.services():
            if service.name == name and hasattr(service, needs):
                return service
        return None


class Service(Protocol):
    """A feature plugged into the Router (see the module docstring)."""

    name: str
    """Section name in ``status`` and ``report`` (e.g. ``ipam``)."""

    def attach(self, context: ServiceContext) -> None: ...

    def load(self) -> None: ...

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        ...

    def on_topology_changed(self, change: TopologyChange) -> None: ...

    def cluster_id(self) -> str | None: ...

    def summary(self) -> dict[str, Any] | None: ...

    def report(self) -> dict[str, Any] | None: ...

    def api_routes(self) -> list[ApiRoute]: ...


class ServiceBase:
    """No-op defaults for every ``Service`` method; subclasses override what they use."""

    name = "service"
    context: ServiceContext

    def attach(self, context: ServiceContext) -> None:
        self.context = context

    def load(self) -> None:
        return None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    def on_topology_changed(self, change: TopologyChange) -> None:
        return None

    def cluster_id(self) -> str | None:
        return None

    def summary(self) -> dict[str, Any] | None:
        return None

    def report(self) -> dict[str, Any] | None:
        return self.summary()

    def api_routes(self) -> list[ApiRoute]:
        return []
